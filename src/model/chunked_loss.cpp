// The head and the cross-entropy in row chunks (chunked_loss.h).
#include "metareuse/model/chunked_loss.h"

#include <fmt/format.h>   // messages
#include <torch/torch.h>  // torch::autograd::Function

#include <algorithm>

#include "metareuse/core/error.h"

namespace metareuse {

namespace {

constexpr std::int64_t kNoLoss = -100;  // next_token_targets' label for a position without a target

// The chunk's logits in the weight's precision: hidden rows (n, C) -> (n, V).
// What project() computes for these rows; the cast is per chunk, so a wide
// (fp32) hidden stream is never copied whole.
torch::Tensor chunk_logits(const torch::Tensor& rows, const torch::Tensor& weight) {
  return torch::mm(rows.to(weight.scalar_type()), weight.t());  // (n, V)
}

class ChunkedHeadLoss : public torch::autograd::Function<ChunkedHeadLoss> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* context, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& targets, std::int64_t chunk_rows) {
    const std::int64_t C = hidden.size(-1);
    const torch::Tensor rows = hidden.reshape({-1, C});  // (N, C)
    const torch::Tensor labels = targets.reshape({-1});  // (N,)
    const std::int64_t N = rows.size(0);
    torch::Tensor total = torch::zeros({}, hidden.options().dtype(torch::kFloat32));
    for (std::int64_t start = 0; start < N; start += chunk_rows) {
      const std::int64_t n = std::min(chunk_rows, N - start);
      // token_loss_sum's computation on this chunk: fp32 logits, summed cross-entropy.
      torch::Tensor logits = chunk_logits(rows.narrow(0, start, n), weight).to(torch::kFloat32);  // (n, V)
      total.add_(at::cross_entropy_loss(logits, labels.narrow(0, start, n), {}, at::Reduction::Sum, kNoLoss));
    }
    context->save_for_backward({hidden, weight, targets});
    context->saved_data["chunk_rows"] = chunk_rows;
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = context->get_saved_variables();
    const torch::Tensor& hidden = saved[0];
    const torch::Tensor& weight = saved[1];
    const torch::Tensor& targets = saved[2];
    const std::int64_t chunk_rows = context->saved_data["chunk_rows"].toInt();
    const torch::Tensor upstream = grad_outputs[0].to(torch::kFloat32);  // () d(result)/d(loss sum)
    const bool hidden_grad = context->needs_input_grad(0);
    const bool weight_grad = context->needs_input_grad(1);

    const std::int64_t C = hidden.size(-1);
    const torch::Tensor rows = hidden.reshape({-1, C});  // (N, C)
    const torch::Tensor labels = targets.reshape({-1});  // (N,)
    const std::int64_t N = rows.size(0);
    torch::Tensor grad_hidden = hidden_grad ? torch::empty_like(hidden, at::MemoryFormat::Contiguous) : torch::Tensor();
    torch::Tensor grad_rows = hidden_grad ? grad_hidden.view({-1, C}) : torch::Tensor();  // (N, C)
    torch::Tensor grad_weight = weight_grad ? torch::zeros_like(weight, at::MemoryFormat::Contiguous) : torch::Tensor();
    for (std::int64_t start = 0; start < N; start += chunk_rows) {
      const std::int64_t n = std::min(chunk_rows, N - start);
      const torch::Tensor x = rows.narrow(0, start, n).to(weight.scalar_type());  // (n, C)
      const torch::Tensor y = labels.narrow(0, start, n);                          // (n,)
      // softmax as exp(log_softmax), the form cross_entropy's own backward
      // uses; the chunk's logits are freed before the fp32 work goes on.
      torch::Tensor grad_logits = torch::log_softmax(chunk_logits(x, weight).to(torch::kFloat32), 1);  // (n, V)
      grad_logits.exp_();
      const torch::Tensor counted = y.ne(kNoLoss);                                  // (n,)
      const torch::Tensor target_column = y.masked_fill(counted.logical_not(), 0).unsqueeze(1);  // (n, 1)
      grad_logits.scatter_add_(1, target_column, torch::full({n, 1}, -1.0, grad_logits.options()));
      // Rows without a target contribute nothing; the rest scale by the upstream gradient.
      grad_logits.mul_(counted.unsqueeze(1).to(torch::kFloat32) * upstream);
      // The gradient enters the matmuls in the weight's precision, as the
      // unchunked head's does after the fp32 cast's backward.
      grad_logits = grad_logits.to(weight.scalar_type());  // (n, V)
      if (hidden_grad) grad_rows.narrow(0, start, n).copy_(torch::mm(grad_logits, weight));  // (n, C)
      if (weight_grad) grad_weight.addmm_(grad_logits.t(), x);                              // (V, C)
    }
    return {grad_hidden, grad_weight, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_token_loss_sum(const torch::Tensor& hidden, const torch::Tensor& weight,
                                     const torch::Tensor& targets, std::int64_t chunk_rows) {
  MR_CHECK(chunk_rows > 0, "chunked cross-entropy needs chunk_rows > 0, got {}", chunk_rows);
  MR_CHECK(weight.dim() == 2 && hidden.size(-1) == weight.size(1),
           "chunked cross-entropy: hidden [{}] does not match the head's weight [{}]", fmt::join(hidden.sizes(), ", "),
           fmt::join(weight.sizes(), ", "));
  MR_CHECK(targets.numel() * hidden.size(-1) == hidden.numel(),
           "chunked cross-entropy: targets [{}] do not match hidden [{}]", fmt::join(targets.sizes(), ", "),
           fmt::join(hidden.sizes(), ", "));
  return ChunkedHeadLoss::apply(hidden, weight, targets, chunk_rows);
}

}  // namespace metareuse
