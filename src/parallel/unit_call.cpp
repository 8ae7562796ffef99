#include "unit_call.h"

#include "metareuse/core/error.h"

namespace metareuse {

namespace {

class UnitFunction : public torch::autograd::Function<UnitFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* context, const torch::Tensor& input,
                               const torch::Tensor& anchor, c10::intrusive_ptr<UnitCall> call) {
    // Function::apply runs this with grad mode off.
    context->saved_data["call"] = c10::IValue::make_capsule(call);
    if (call->recompute) {
      context->save_for_backward({input});
      torch::Tensor flat = call->gather();  // (numel,), freed on return
      return call->fn(input, flat);
    }
    torch::AutoGradMode enable(true);
    call->kept_input = input.detach();
    if (input.is_floating_point()) call->kept_input.requires_grad_(true);
    call->kept_flat = call->gather().detach().requires_grad_(true);
    call->kept_output = call->fn(call->kept_input, call->kept_flat);
    return call->kept_output.detach();
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    auto call = c10::static_intrusive_pointer_cast<UnitCall>(context->saved_data["call"].toCapsule());
    torch::Tensor input, flat, output;
    if (call->recompute) {
      input = context->get_saved_variables()[0].detach();
      if (input.is_floating_point()) input.requires_grad_(true);
      flat = call->gather().detach().requires_grad_(true);
      torch::AutoGradMode enable(true);
      output = call->fn(input, flat);
    } else {
      input = std::move(call->kept_input);
      flat = std::move(call->kept_flat);
      output = std::move(call->kept_output);
      MR_CHECK(output.defined(), "a unit kept for backward was differentiated twice");
    }
    const bool input_differentiable = input.requires_grad();
    std::vector<torch::Tensor> wrt = {flat};
    if (input_differentiable) wrt.push_back(input);
    auto grads = torch::autograd::grad({output}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    torch::Tensor flat_grad = grads[0].defined() ? grads[0] : torch::zeros_like(flat);
    torch::Tensor anchor_grad = call->deliver_grad(flat_grad);
    return {input_differentiable ? grads[1] : torch::Tensor(), anchor_grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor run_unit_call(const torch::Tensor& input, const torch::Tensor& anchor, c10::intrusive_ptr<UnitCall> call) {
  MR_CHECK(anchor.requires_grad(), "a unit call's anchor must require grad");
  return UnitFunction::apply(input, anchor, std::move(call));
}

}  // namespace metareuse
