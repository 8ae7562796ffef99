// The bounds of one generation request, checked before any memory is
// touched: the prompt and the new tokens must fit the model's positions, and
// the prompt's attention scores (computed at once in the prefill) must fit in
// this machine's memory. Torch-free.
#pragma once

#include <cstdint>

#include "metareuse/model/config.h"

namespace metareuse {

// Throws UsageError naming the flag (--prompt / --prompt-ids,
// --max-new-tokens), the sizes and the bound. `memory_bytes` <= 0: this
// machine's physical memory.
void validate_generation_request(const LlamaConfig& model, std::int64_t prompt_tokens, std::int64_t max_new_tokens,
                                 std::int64_t memory_bytes = 0);

}  // namespace metareuse
