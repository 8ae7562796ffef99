// One call of a model unit inside a training step, and the one autograd
// Function that runs it: the sharding engine's (fsdp.h), the single recompute
// rule. Private to parallel/.
//
// A unit computes output = fn(input, flat), where `flat` is the unit's 1-D
// parameter buffer. The call says where that buffer comes from (`gather`: the
// model's own leaf, or an all-gather of the shards) and where its gradient
// goes (`deliver_grad`). Two modes:
//   recompute = true   forward runs without a graph and keeps only the input;
//                      backward gathers again, recomputes with grad, and
//                      differentiates (activation checkpointing; with sharding
//                      this is ZeRO-3: the gathered buffer lives only while used).
//   recompute = false  forward runs with grad and keeps the graph and the
//                      gathered buffer until backward (FSDP's "reshard after
//                      forward = false"): no second forward, more memory.
// Both give the same gradients (test_train checks it).
#pragma once

#include <torch/torch.h>  // torch::Tensor, torch::CustomClassHolder, autograd

#include <functional>

#include "metareuse/model/llama.h"  // UnitFn

namespace metareuse {

struct UnitCall : torch::CustomClassHolder {
  std::function<torch::Tensor()> gather;  // the unit's flat buffer, in compute precision, not requiring grad
  UnitFn fn;
  // Receives d(loss)/d(flat); returns the gradient for the call's `anchor`
  // tensor (see run_unit_call), or an undefined tensor.
  std::function<torch::Tensor(const torch::Tensor& flat_grad)> deliver_grad;
  bool recompute = true;

  // Kept between forward and backward when recompute is false.
  torch::Tensor kept_input, kept_flat, kept_output;
};

// Runs `call` on `input` inside the autograd graph. `anchor` must require grad
// (it puts the node in the graph even when the input is token ids): the
// unit's own leaf buffer (deliver_grad returns the flat gradient for it) or a
// shared dummy (deliver_grad consumes the gradient and returns nothing). The
// graph owns the call (no raw pointers), so it lives exactly until backward.
torch::Tensor run_unit_call(const torch::Tensor& input, const torch::Tensor& anchor, c10::intrusive_ptr<UnitCall> call);

}  // namespace metareuse
