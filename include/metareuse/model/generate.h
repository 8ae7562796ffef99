// Text generation from a LlamaModel: greedy or seeded temperature / top-p
// sampling, with the KV cache (or, for comparison, recomputing the prefix).
#pragma once

#include <cstdint>
#include <vector>

#include "metareuse/model/llama.h"

namespace metareuse {

struct GenerationOptions {
  std::int64_t max_new_tokens = 16;
  bool greedy = true;          // argmax; otherwise sample
  double temperature = 1.0;    // sampling only; > 0
  double top_p = 1.0;          // sampling only; in (0, 1]: smallest set of tokens with this much probability
  std::uint64_t seed = 0;      // sampling only: the same seed gives the same tokens
  bool stop_on_eos = false;    // stop after emitting one of the config's eos ids
  bool use_cache = true;       // false: run the whole sequence again for every token (benchmark baseline)
};

// Picks the next token from one row of logits (V,). Greedy takes the first
// maximum (as torch.argmax). Sampling draws from softmax(logits / temperature)
// restricted to the top-p nucleus, with `random` a uniform draw in [0, 1).
std::int64_t pick_token(const torch::Tensor& logits, const GenerationOptions& options, double random);

// The new tokens that follow `prompt` (not including it). Throws InputError
// for an empty prompt, tokens outside the vocabulary, or bad options.
std::vector<std::int64_t> generate(const LlamaModel& model, const std::vector<std::int64_t>& prompt,
                                   const GenerationOptions& options);

}  // namespace metareuse
