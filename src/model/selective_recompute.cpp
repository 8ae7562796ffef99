// A prologue recomputed in backward, its projections kept (selective_recompute.h).
#include "metareuse/model/selective_recompute.h"

#include <torch/torch.h>  // torch::autograd::Function

#include "metareuse/core/error.h"
#include "metareuse/model/llama.h"  // project

namespace metareuse {

namespace {

struct PrologueHolder : torch::CustomClassHolder {
  explicit PrologueHolder(Prologue f) : fn(std::move(f)) {}
  Prologue fn;
};

class PrologueProjections : public torch::autograd::Function<PrologueProjections> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* context, at::TensorList inputs,
                                                at::TensorList weights, c10::intrusive_ptr<PrologueHolder> prologue) {
    // Function::apply runs this with grad mode off: the prologue's result is
    // a temporary that nothing keeps.
    const std::vector<torch::Tensor> in(inputs.begin(), inputs.end());
    const torch::Tensor x = prologue->fn(in);
    torch::autograd::variable_list outputs;
    outputs.reserve(weights.size());
    for (const auto& weight : weights) outputs.push_back(project(x, weight));
    std::vector<torch::Tensor> saved(inputs.begin(), inputs.end());
    saved.insert(saved.end(), weights.begin(), weights.end());
    context->save_for_backward(saved);
    context->saved_data["inputs"] = static_cast<int64_t>(inputs.size());
    context->saved_data["prologue"] = c10::IValue::make_capsule(prologue);
    return outputs;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = context->get_saved_variables();
    const auto n_inputs = static_cast<std::size_t>(context->saved_data["inputs"].toInt());
    auto prologue =
        c10::static_intrusive_pointer_cast<PrologueHolder>(context->saved_data["prologue"].toCapsule());
    const std::size_t n_weights = saved.size() - n_inputs;

    // The prologue again, with grad, from its kept inputs.
    std::vector<torch::Tensor> inputs;
    std::vector<torch::Tensor> differentiable;
    std::vector<std::size_t> differentiable_index;
    for (std::size_t i = 0; i < n_inputs; ++i) {
      torch::Tensor input = saved[i].detach();
      if (context->needs_input_grad(i) && input.is_floating_point()) {
        input.requires_grad_(true);
        differentiable.push_back(input);
        differentiable_index.push_back(i);
      }
      inputs.push_back(input);
    }
    torch::Tensor x;
    {
      torch::AutoGradMode enable(true);
      x = prologue->fn(inputs);
    }

    // Each projection's backward as autograd's linear does it: the input's
    // gradient through the weight, the weight's from the (recomputed) input.
    torch::autograd::variable_list grads(n_inputs + n_weights + 1);
    torch::Tensor grad_x;
    for (std::size_t j = 0; j < n_weights; ++j) {
      const torch::Tensor& weight = saved[n_inputs + j];
      const torch::Tensor& grad = grad_outputs[j];
      if (!grad.defined()) continue;
      const torch::Tensor rows = x.detach().to(weight.scalar_type()).reshape({-1, x.size(-1)});  // (N, in)
      const torch::Tensor grad_rows = grad.reshape({-1, grad.size(-1)});                          // (N, out)
      // mm's backward for the folded (N, in) x (in, out) product, as autograd forms it.
      if (context->needs_input_grad(n_inputs + j)) grads[n_inputs + j] = rows.t().mm(grad_rows).t();  // (out, in)
      if (!differentiable.empty()) {
        torch::Tensor part = grad.matmul(weight);  // (.., in)
        grad_x = grad_x.defined() ? grad_x + part : part;
      }
    }
    if (!differentiable.empty() && grad_x.defined()) {
      auto input_grads = torch::autograd::grad({x}, differentiable, {grad_x.to(x.scalar_type())},
                                               /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
      for (std::size_t k = 0; k < differentiable.size(); ++k) grads[differentiable_index[k]] = input_grads[k];
    }
    return grads;
  }
};

}  // namespace

std::vector<torch::Tensor> recomputed_prologue_projections(Prologue prologue, const std::vector<torch::Tensor>& inputs,
                                                           const std::vector<torch::Tensor>& weights) {
  MR_CHECK(!inputs.empty() && !weights.empty(), "a recomputed prologue needs inputs and at least one projection");
  return PrologueProjections::apply(at::TensorList(inputs), at::TensorList(weights),
                                    c10::make_intrusive<PrologueHolder>(std::move(prologue)));
}

}  // namespace metareuse
