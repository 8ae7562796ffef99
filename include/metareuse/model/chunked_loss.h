// The LM head and its cross-entropy run in row chunks: the training loss
// without the (rows, V) fp32 logits ever existing at once.
//
// Forward computes, chunk by chunk, logits = hidden @ weight^T in the weight's
// precision, upcasts them to fp32 and sums the cross-entropy (label -100
// ignored), keeping only hidden, weight and targets. Backward recomputes each
// chunk's logits and forms (softmax - onehot) * upstream gradient: the
// gradient of the hidden rows chunk by chunk, and the weight's summed over
// the chunks. Peak memory is one chunk's logits, not all of them
// (docs/training.md, "Chunked cross-entropy").
#pragma once

#include <torch/types.h>  // torch::Tensor

#include <cstdint>

namespace metareuse {

// train.loss_chunk_rows's default (core/config.cpp declares the key; test_train
// checks that the two agree). With 256 rows the memory plan's head backward
// stays below its embedding unit's backward for SmolLM2 and Llama 3.2 in every
// precision, so the logits no longer set a step's peak (docs/training.md).
inline constexpr std::int64_t kLossChunkRowsDefault = 256;

// token_loss_sum(project(hidden, weight), targets), computed `chunk_rows` rows
// at a time (chunk_rows > 0; the last chunk may be shorter). hidden (B, T, C)
// in any float dtype (cast per chunk to the weight's), weight (V, C), targets
// (B, T) int64 with -100 for no loss. Returns the fp32 sum, a scalar.
// Gradients reach hidden and weight (a view of a unit's flat buffer gets its
// gradient there, as the unchunked head's would). In fp16/bf16 the weight's
// gradient is accumulated over the chunks in the weight's precision (one
// rounding per chunk instead of one in all).
torch::Tensor chunked_token_loss_sum(const torch::Tensor& hidden, const torch::Tensor& weight,
                                     const torch::Tensor& targets, std::int64_t chunk_rows);

}  // namespace metareuse
