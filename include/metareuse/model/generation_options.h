// How text is decoded (model/generate.h runs it): greedy or seeded sampling,
// the token budget, the stop tokens, the batch. Torch-free, so options that
// carry a decoding (eval's, eval/eval_options.h) need no model headers.
#pragma once

#include <cstdint>
#include <vector>

namespace metareuse {

struct GenerationOptions {
  std::int64_t max_new_tokens = 16;
  bool greedy = true;          // argmax; otherwise sample
  double temperature = 1.0;    // sampling only; > 0
  double top_p = 1.0;          // sampling only; in (0, 1]: smallest set of tokens with this much probability
  std::uint64_t seed = 0;      // sampling only: the same seed gives the same tokens
  bool stop_on_eos = false;    // stop after emitting one of the config's eos ids
  std::vector<std::int64_t> stop_ids;  // stop when one of these is picked (it ends `stop`, not `ids`)
  bool use_cache = true;       // false: run the whole sequence again for every token (benchmark baseline)
  std::int64_t batch_size = 0; // generate_batch: prompts decoded together, in file order; 0: all at once
};

}  // namespace metareuse
