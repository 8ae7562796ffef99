// Autoregressive generation with a KV cache: the prompt is run once, then
// each new token costs one single-position forward over the cached keys and
// values.
#include "metareuse/model/generate.h"

#include <fmt/format.h>   // messages
#include <torch/torch.h>  // softmax, sort

#include <algorithm>
#include <random>

#include "metareuse/core/error.h"

namespace metareuse {

std::int64_t pick_token(const torch::Tensor& logits, const GenerationOptions& options, double random) {
  if (options.greedy) return logits.argmax().item<std::int64_t>();
  // Probabilities in fp64 so the nucleus cut and the draw are stable.
  torch::Tensor probabilities = torch::softmax(logits.to(torch::kFloat64).cpu() / options.temperature, -1);  // (V,)
  auto [sorted, order] = probabilities.sort(-1, /*descending=*/true);
  const double* p = sorted.data_ptr<double>();
  const std::int64_t* token = order.data_ptr<std::int64_t>();
  const std::int64_t V = sorted.numel();
  // Smallest prefix whose probability reaches top_p (at least one token).
  std::int64_t kept = 0;
  double mass = 0.0;
  while (kept < V && (kept == 0 || mass < options.top_p)) mass += p[kept++];
  const double target = random * mass;
  double running = 0.0;
  for (std::int64_t i = 0; i < kept; ++i) {
    running += p[i];
    if (target < running) return token[i];
  }
  return token[kept - 1];
}

std::vector<std::int64_t> generate(const LlamaModel& model, const std::vector<std::int64_t>& prompt,
                                   const GenerationOptions& options) {
  const LlamaConfig& config = model.config();
  if (prompt.empty()) throw InputError("generation needs a prompt of at least one token");
  for (auto id : prompt) {
    if (id < 0 || id >= config.vocab_size) {
      throw InputError(fmt::format("prompt token {} is outside the vocabulary [0, {})", id, config.vocab_size));
    }
  }
  if (options.max_new_tokens < 0) throw InputError("max_new_tokens must be >= 0");
  if (!options.greedy && !(options.temperature > 0)) throw InputError("temperature must be > 0");
  if (!options.greedy && !(options.top_p > 0 && options.top_p <= 1)) throw InputError("top_p must lie in (0, 1]");

  torch::NoGradGuard no_grad;
  std::mt19937_64 engine(options.seed);
  // 53 random bits -> [0, 1), the same on every platform.
  auto uniform = [&engine] { return static_cast<double>(engine() >> 11) * 0x1.0p-53; };
  auto as_tensor = [](const std::vector<std::int64_t>& ids) {
    return torch::tensor(ids, torch::kInt64).view({1, -1});  // (1, T)
  };

  std::vector<std::int64_t> sequence = prompt;
  std::vector<std::int64_t> generated;
  const std::int64_t total = static_cast<std::int64_t>(prompt.size()) + options.max_new_tokens;
  KvCache cache = model.make_cache(1, options.use_cache ? total : 1);
  torch::Tensor logits;  // (1, T, V)
  if (options.use_cache && options.max_new_tokens > 0) logits = model.forward(as_tensor(prompt), &cache);
  for (std::int64_t step = 0; step < options.max_new_tokens; ++step) {
    if (!options.use_cache) logits = model.forward(as_tensor(sequence));
    torch::Tensor last = logits[0][logits.size(1) - 1];  // (V,)
    const std::int64_t next = pick_token(last, options, options.greedy ? 0.0 : uniform());
    generated.push_back(next);
    sequence.push_back(next);
    if (options.stop_on_eos &&
        std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), next) != config.eos_token_ids.end()) {
      break;
    }
    if (options.use_cache && step + 1 < options.max_new_tokens) logits = model.forward(as_tensor({next}), &cache);
  }
  return generated;
}

}  // namespace metareuse
