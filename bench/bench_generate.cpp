// Generation cost per new token with the KV cache against recomputing the
// whole prefix (the baseline), at growing lengths, in one run.
//
//   build/bin/bench_generate [--preset debug-small] [--lengths 64,128,256,512,1024] [--steps 16]
//                            [--new-tokens 256]
//
// With the cache, a new token runs one position through the model and attends
// over the cached keys, so its time stays nearly flat as the sequence grows;
// without it, every token reruns the whole sequence and its time grows
// linearly. Prints both, their ratio, the growth of each from the shortest to
// the longest length, an end-to-end generate() comparison, and peak RSS.
#include <fmt/format.h>   // output
#include <torch/torch.h>  // tensors

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "metareuse/core/timing.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/llama.h"

using namespace metareuse;

namespace {

std::vector<std::int64_t> parse_lengths(const std::string& text) {
  std::vector<std::int64_t> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) out.push_back(std::stoll(item));
  return out;
}

// Seconds per token for `steps` single-token steps after a cached prefix of `length`.
double cached_seconds_per_token(const LlamaModel& model, std::int64_t length, std::int64_t steps) {
  torch::Tensor prefix = torch::randint(0, model.config().vocab_size, {1, length}, torch::kInt64);
  KvCache cache = model.make_cache(1, length + steps);
  torch::Tensor logits = model.forward(prefix, &cache);
  Stopwatch watch;
  for (std::int64_t step = 0; step < steps; ++step) {
    torch::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1, /*keepdim=*/true);  // (1, 1)
    logits = model.forward(next, &cache);
  }
  return watch.seconds() / static_cast<double>(steps);
}

// Seconds per token when each token reruns the whole sequence of `length` (+ the tokens so far).
double recompute_seconds_per_token(const LlamaModel& model, std::int64_t length, std::int64_t steps) {
  torch::Tensor sequence = torch::randint(0, model.config().vocab_size, {1, length}, torch::kInt64);
  Stopwatch watch;
  for (std::int64_t step = 0; step < steps; ++step) {
    torch::Tensor logits = model.forward(sequence);
    torch::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1, /*keepdim=*/true);  // (1, 1)
    sequence = torch::cat({sequence, next}, 1);
  }
  return watch.seconds() / static_cast<double>(steps);
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "debug-small";
  std::vector<std::int64_t> lengths = {64, 128, 256, 512, 1024};
  std::int64_t steps = 16;
  std::int64_t new_tokens = 256;  // the end-to-end comparison's
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--preset") {
      preset = argv[i + 1];
    } else if (flag == "--lengths") {
      lengths = parse_lengths(argv[i + 1]);
    } else if (flag == "--steps") {
      steps = std::stoll(argv[i + 1]);
    } else if (flag == "--new-tokens") {
      new_tokens = std::stoll(argv[i + 1]);
    } else {
      fmt::print(stderr, "unknown flag {}; flags: --preset NAME --lengths 64,128,... --steps N --new-tokens N\n", flag);
      return 64;
    }
  }

  torch::manual_seed(1);
  LlamaModel model(LlamaConfig::preset(preset));
  model.init_weights(1);
  torch::NoGradGuard no_grad;
  fmt::print("bench_generate: preset {} ({} parameters), fp32 CPU, {} torch thread(s), attention: {}\n", preset,
             model.parameter_count(), torch::get_num_threads(), attention_name(model.config().attention));
  (void)cached_seconds_per_token(model, 16, 4);  // warm-up

  fmt::print("{:>8} {:>16} {:>18} {:>10}\n", "length", "KV cache ms/tok", "recompute ms/tok", "ratio");
  std::vector<double> cached, recomputed;
  for (auto length : lengths) {
    cached.push_back(cached_seconds_per_token(model, length, steps));
    recomputed.push_back(recompute_seconds_per_token(model, length, std::max<std::int64_t>(2, steps / 4)));
    fmt::print("{:>8} {:>16.3f} {:>18.3f} {:>9.1f}x\n", length, cached.back() * 1e3, recomputed.back() * 1e3,
               recomputed.back() / cached.back());
  }
  const double length_growth = static_cast<double>(lengths.back()) / static_cast<double>(lengths.front());
  fmt::print("per-token time from length {} to {} ({:.0f}x longer): KV cache {:.2f}x, recompute {:.2f}x\n",
             lengths.front(), lengths.back(), length_growth, cached.back() / cached.front(),
             recomputed.back() / recomputed.front());

  // End to end through generate(): a 16-token prompt, --new-tokens new tokens.
  std::vector<std::int64_t> prompt(16);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int64_t>(i + 1);
  GenerationOptions options;
  options.max_new_tokens = new_tokens;
  Stopwatch watch;
  auto with_cache = generate(model, prompt, options);
  const double cached_total = watch.seconds();
  options.use_cache = false;
  watch.reset();
  auto without_cache = generate(model, prompt, options);
  const double recomputed_total = watch.seconds();
  fmt::print("generate(16-token prompt, {} new): KV cache {:.3f} s, recompute {:.3f} s, ratio {:.1f}x, same tokens: {}\n",
             new_tokens, cached_total, recomputed_total, recomputed_total / cached_total, with_cache == without_cache ? "yes" : "no");
  fmt::print("peak RSS {}\n", format_bytes(static_cast<double>(peak_rss_bytes())));
  return with_cache == without_cache ? 0 : 1;
}
