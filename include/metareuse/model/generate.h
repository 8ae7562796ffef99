// Text generation from a LlamaModel: greedy or seeded temperature / top-p
// sampling, batched over prompts of different lengths with one KV cache
// (or, for comparison, recomputing the prefix).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/model/generation_options.h"  // GenerationOptions
#include "metareuse/model/llama.h"

namespace metareuse {

// Picks the next token from one row of logits (V,). Greedy takes the first
// maximum (as torch.argmax). Sampling draws from softmax(logits / temperature)
// restricted to the top-p nucleus, with `random` a uniform draw in [0, 1).
std::int64_t pick_token(const torch::Tensor& logits, const GenerationOptions& options, double random);

// What one prompt produced.
struct Generated {
  std::vector<std::int64_t> ids;  // the new tokens, without a stop token
  std::int64_t stop = -1;         // the stop token (stop_ids or, with stop_on_eos, an eos id) that ended it; -1: none

  // The tokens as transformers' generate returns them: `ids`, then the stop
  // token when one ended the generation. The one place that appends it.
  std::vector<std::int64_t> ids_with_stop() const;
};

// The continuations of `prompts`, generated together (options.batch_size at
// a time): the prompts of a batch are left-padded, prefilled in one forward, then decoded one token per
// step for every row still running; a row that stops leaves the batch.
// Sampling draws from one generator per sequence, seeded by (options.seed,
// sequence_ids[i]) (default: i), so a sequence's tokens do not depend on
// which other prompts share its batch, nor on which rank runs it.
// Throws InputError for an empty prompt, tokens outside the vocabulary, bad
// options, or sequence_ids of the wrong size.
std::vector<Generated> generate_batch(const LlamaModel& model, const std::vector<std::vector<std::int64_t>>& prompts,
                                      const GenerationOptions& options,
                                      const std::vector<std::uint64_t>& sequence_ids = {});

// One prompt (generate_batch of one, sequence id 0): the new tokens, with the
// stop token last when one ended the generation.
std::vector<std::int64_t> generate(const LlamaModel& model, const std::vector<std::int64_t>& prompt,
                                   const GenerationOptions& options);

}  // namespace metareuse
