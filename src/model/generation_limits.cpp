#include "metareuse/model/generation_limits.h"

#include <fmt/format.h>
#include <unistd.h>

#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"

namespace metareuse {

void validate_generation_request(const LlamaConfig& model, std::int64_t prompt_tokens, std::int64_t max_new_tokens,
                                 std::int64_t memory_bytes) {
  const std::int64_t positions = model.max_position_embeddings;
  if (prompt_tokens <= 0) throw UsageError("the prompt is empty");
  if (max_new_tokens < 0) throw UsageError(fmt::format("--max-new-tokens must be >= 0, got {}", max_new_tokens));
  if (prompt_tokens > positions) {
    throw UsageError(fmt::format("the prompt is {} tokens, longer than the model's {} positions "
                                 "(max_position_embeddings); shorten --prompt",
                                 prompt_tokens, positions));
  }
  if (max_new_tokens > positions - prompt_tokens) {
    throw UsageError(fmt::format("--max-new-tokens {} with a {}-token prompt exceeds the model's {} positions "
                                 "(max_position_embeddings): at most {} new tokens fit",
                                 max_new_tokens, prompt_tokens, positions, positions - prompt_tokens));
  }
  if (memory_bytes <= 0) {
    memory_bytes = static_cast<std::int64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
  }
  // The prefill's (1, H, T, T) scores in fp32 and the softmax beside them:
  // the largest allocation of a long prompt (T <= positions keeps this in int64).
  const std::int64_t T = prompt_tokens;
  const std::int64_t scores_bytes = 2 * model.num_attention_heads * T * T * 4;
  if (memory_bytes > 0 && scores_bytes > memory_bytes / 2) {
    throw UsageError(fmt::format("the prompt is {} tokens: its attention scores alone need {}, more than half of "
                                 "this machine's {}; shorten --prompt",
                                 prompt_tokens, format_bytes(static_cast<double>(scores_bytes)),
                                 format_bytes(static_cast<double>(memory_bytes))));
  }
}

}  // namespace metareuse
