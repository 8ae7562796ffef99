// Selective activation recompute inside a decoder layer: matmul and attention
// outputs are kept for backward, the cheap elementwise ops between them
// (RMSNorm, casts, the attention output's reshape, SiLU(gate) * up) keep only
// their inputs and run again in backward. torchtitan's op-level selective
// checkpointing saves the outputs of aten.mm and of scaled_dot_product_attention
// (its _save_list) and recomputes the rest; this is that policy for our layer.
//
// libtorch's C++ API has no selective-checkpoint policy (torch.utils.checkpoint's
// policies and create_selective_checkpoint_contexts are Python only), so the
// policy is written by hand as one small autograd Function: an elementwise
// prologue followed by the projections that read its result. The projections'
// own backward needs that result (the matmul's input), which is why the
// prologue and its projections are one node: it saves the prologue's inputs
// and the weights, and in backward recomputes the prologue, forms the
// projections' gradients from it (without recomputing any matmul), and
// differentiates the prologue. Rotary embeddings need no node: autograd keeps
// only their shared (T, D) tables, and SDPA keeps its inputs and output.
#pragma once

#include <torch/types.h>  // torch::Tensor

#include <functional>
#include <vector>

namespace metareuse {

// An elementwise computation of a few tensors, run in forward and again in backward.
using Prologue = std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs)>;

// outputs[j] = project(prologue(inputs), weights[j]) (llama.h's project: the
// prologue's result cast to the weight's precision, times the weight's
// transpose). Autograd keeps `inputs` and `weights`, never the prologue's
// result; gradients reach every input and weight that requires grad, equal
// to the unfused ops' to rounding (test_train). Only worth calling with grad
// mode on.
std::vector<torch::Tensor> recomputed_prologue_projections(Prologue prologue, const std::vector<torch::Tensor>& inputs,
                                                           const std::vector<torch::Tensor>& weights);

}  // namespace metareuse
