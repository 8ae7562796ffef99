// Batched autoregressive generation with a KV cache. Prompts of different
// lengths are left-padded so that every row appends at the same cache column
// (KvCache stays one rectangular buffer); each token's rotary position is its
// position in its own sequence and a mask hides the padding, so a row
// computes what it would compute alone (to rounding). Rows that stop leave
// the batch, so the cost follows the sequences still running.
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

namespace {

// Every rule a generation request must meet, checked before anything runs.
void check_generation_request(const LlamaConfig& config, const std::vector<std::vector<std::int64_t>>& prompts,
                              const GenerationOptions& options, const std::vector<std::uint64_t>& sequence_ids) {
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw InputError(fmt::format("generation needs a prompt of at least one token (prompt {})", i));
    for (auto id : prompts[i]) {
      if (id < 0 || id >= config.vocab_size) {
        throw InputError(fmt::format("prompt {}: token {} is outside the vocabulary [0, {})", i, id, config.vocab_size));
      }
    }
  }
  if (options.max_new_tokens < 0) throw InputError("max_new_tokens must be >= 0");
  if (!options.greedy && !(options.temperature > 0)) throw InputError("temperature must be > 0");
  if (!options.greedy && !(options.top_p > 0 && options.top_p <= 1)) throw InputError("top_p must lie in (0, 1]");
  if (!sequence_ids.empty() && sequence_ids.size() != prompts.size()) {
    throw InputError(fmt::format("{} sequence ids for {} prompts", sequence_ids.size(), prompts.size()));
  }
  if (options.batch_size < 0) throw InputError("batch_size must be >= 0");
}

// One generator per sequence, seeded by (seed, sequence id): its draws do not
// depend on its batch or rank. None when decoding greedily.
std::vector<std::mt19937_64> sequence_engines(std::size_t count, const GenerationOptions& options,
                                              const std::vector<std::uint64_t>& sequence_ids) {
  std::vector<std::mt19937_64> engines;
  if (options.greedy) return engines;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t id = sequence_ids.empty() ? i : sequence_ids[i];
    std::seed_seq seeds{static_cast<std::uint32_t>(options.seed), static_cast<std::uint32_t>(options.seed >> 32),
                        static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id >> 32)};
    engines.emplace_back(seeds);
  }
  return engines;
}

// The running rows of a batch, left-padded so that every row appends at the
// same column: row i's prompt ends at column `longest` - 1. Token 0 pads
// (masked, never attended).
struct PaddedRows {
  torch::Tensor tokens;     // (B, W) int64
  torch::Tensor positions;  // (B, W) int64: position in its own sequence
  torch::Tensor valid;      // (B, W) bool: the column holds a real token
  std::vector<std::size_t> prompt_of;  // batch row -> prompt index

  PaddedRows(const std::vector<std::vector<std::int64_t>>& prompts, std::int64_t longest, std::int64_t width) {
    const std::int64_t N = static_cast<std::int64_t>(prompts.size());
    tokens = torch::zeros({N, width}, torch::kInt64);
    positions = torch::zeros({N, width}, torch::kInt64);
    valid = torch::ones({N, width}, torch::kBool);
    for (std::int64_t i = 0; i < N; ++i) {
      const auto& prompt = prompts[static_cast<std::size_t>(i)];
      const std::int64_t pad = longest - static_cast<std::int64_t>(prompt.size());
      tokens[i].narrow(0, pad, static_cast<std::int64_t>(prompt.size())).copy_(torch::tensor(prompt, torch::kInt64));
      positions[i].narrow(0, pad, width - pad).copy_(torch::arange(width - pad, torch::kInt64));
      if (pad > 0) valid[i].narrow(0, 0, pad).fill_(false);
      prompt_of.push_back(static_cast<std::size_t>(i));
    }
  }

  // Keeps only the batch rows `keep` (ascending), here and in the cache.
  void keep_rows(const std::vector<std::int64_t>& keep, KvCache& cache) {
    torch::Tensor kept = torch::tensor(keep, torch::kInt64);
    tokens = tokens.index_select(0, kept);
    positions = positions.index_select(0, kept);
    valid = valid.index_select(0, kept);
    cache.keep_rows(kept);
    std::vector<std::size_t> kept_prompts;
    for (auto r : keep) kept_prompts.push_back(prompt_of[static_cast<std::size_t>(r)]);
    prompt_of = std::move(kept_prompts);
  }
};

// One batch, generated to the end (no batch_size split).
std::vector<Generated> generate_one_batch(const LlamaModel& model, const std::vector<std::vector<std::int64_t>>& prompts,
                                          const GenerationOptions& options,
                                          const std::vector<std::uint64_t>& sequence_ids) {
  std::vector<Generated> results(prompts.size());
  if (prompts.empty() || options.max_new_tokens == 0) return results;
  const LlamaConfig& config = model.config();
  std::vector<std::int64_t> stops = options.stop_ids;
  if (options.stop_on_eos) stops.insert(stops.end(), config.eos_token_ids.begin(), config.eos_token_ids.end());
  std::vector<std::mt19937_64> engines = sequence_engines(prompts.size(), options, sequence_ids);

  torch::NoGradGuard no_grad;
  std::int64_t longest = 0;
  for (const auto& prompt : prompts) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(prompt.size()));
  const std::int64_t width = longest + options.max_new_tokens;  // columns a row can fill
  PaddedRows rows(prompts, longest, width);

  KvCache cache = model.make_cache(static_cast<std::int64_t>(prompts.size()), options.use_cache ? width : longest);
  std::int64_t filled = longest;  // columns holding tokens
  torch::Tensor last;             // (B, V) logits of each row's last token
  auto run = [&] {
    // With the cache only the new column is computed; without, every column again.
    const std::int64_t from = options.use_cache ? cache.length() : 0;
    if (!options.use_cache) cache.clear();
    const LeftPadding padding{rows.positions.narrow(1, from, filled - from), rows.valid.narrow(1, 0, filled)};
    torch::Tensor logits =
        model.forward(rows.tokens.narrow(1, from, filled - from), padding, cache, /*last_only=*/true);  // (B, 1, V)
    last = logits.select(1, logits.size(1) - 1);
  };
  run();
  for (std::int64_t step = 0; step < options.max_new_tokens; ++step) {
    // The step's one wait for the device: the chosen ids (greedy) or the
    // last logits (sampling, drawn on the host) come over in one copy, and
    // are read through a pointer, not a scalar read per row.
    torch::Tensor greedy_picks;
    if (options.greedy) greedy_picks = last.argmax(-1).to(torch::kCPU, torch::kInt64).contiguous();  // (B,), as pick_token
    const std::int64_t* picks = options.greedy ? greedy_picks.data_ptr<std::int64_t>() : nullptr;
    torch::Tensor cpu_last = options.greedy ? torch::Tensor() : last.cpu();
    std::vector<std::int64_t> keep;
    std::vector<std::int64_t> next;  // the next token of each kept row
    for (std::size_t r = 0; r < rows.prompt_of.size(); ++r) {
      const std::size_t prompt = rows.prompt_of[r];
      Generated& out = results[prompt];
      const std::int64_t token =
          options.greedy ? picks[r]
                         : pick_token(cpu_last[static_cast<std::int64_t>(r)], options,
                                      static_cast<double>(engines[prompt]() >> 11) * 0x1.0p-53);  // [0, 1)
      if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
        out.stop = token;
        continue;
      }
      out.ids.push_back(token);
      if (static_cast<std::int64_t>(out.ids.size()) < options.max_new_tokens) {
        keep.push_back(static_cast<std::int64_t>(r));
        next.push_back(token);
      }
    }
    if (keep.empty()) break;
    if (keep.size() < rows.prompt_of.size()) rows.keep_rows(keep, cache);
    rows.tokens.select(1, filled).copy_(torch::tensor(next, torch::kInt64));
    ++filled;
    run();
  }
  return results;
}

}  // namespace

std::vector<Generated> generate_batch(const LlamaModel& model, const std::vector<std::vector<std::int64_t>>& prompts,
                                      const GenerationOptions& options,
                                      const std::vector<std::uint64_t>& sequence_ids) {
  check_generation_request(model.config(), prompts, options, sequence_ids);
  const std::size_t batch_size = static_cast<std::size_t>(options.batch_size);
  if (batch_size == 0 || prompts.size() <= batch_size) return generate_one_batch(model, prompts, options, sequence_ids);
  std::vector<Generated> results;
  for (std::size_t first = 0; first < prompts.size(); first += batch_size) {
    const std::size_t end = std::min(prompts.size(), first + batch_size);
    std::vector<std::vector<std::int64_t>> batch(prompts.begin() + static_cast<std::ptrdiff_t>(first),
                                                 prompts.begin() + static_cast<std::ptrdiff_t>(end));
    std::vector<std::uint64_t> ids;
    for (std::size_t i = first; i < end; ++i) ids.push_back(sequence_ids.empty() ? i : sequence_ids[i]);
    for (auto& generated : generate_one_batch(model, batch, options, ids)) results.push_back(std::move(generated));
  }
  return results;
}

std::vector<std::int64_t> Generated::ids_with_stop() const {
  std::vector<std::int64_t> out = ids;
  if (stop >= 0) out.push_back(stop);
  return out;
}

std::vector<std::int64_t> generate(const LlamaModel& model, const std::vector<std::int64_t>& prompt,
                                   const GenerationOptions& options) {
  return generate_batch(model, {prompt}, options).front().ids_with_stop();
}

}  // namespace metareuse
