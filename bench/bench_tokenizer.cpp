// Llama 3 tokenizer throughput on GSM8K text (one process = one rank).
//
//   build/bin/bench_tokenizer [tokenizer.json] [gsm8k train.jsonl] [passes]
//
// Measures encode() as metareuse runs it (ASCII fast path + PCRE2 pre-tokenizer,
// piece cache), and baselines in the same run: PCRE2 for every piece with the
// cache; PCRE2 with the cache off; and a naive merge loop that looks every
// adjacent pair up again after each merge. All must give identical ids.
// Prints MB/s, the ratios and peak RSS.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>

#include "metareuse/core/timing.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "byte_level_bpe.h"  // src/tokenizer: the BPE core it times

using namespace metareuse;
using tokenizer_detail::ByteLevelBpeTokenizer;

namespace {

// The quadratic baseline: after every merge, every adjacent pair is looked up again.
std::vector<TokenId> naive_encode(const ByteLevelBpeTokenizer& tokenizer, const std::string& text) {
  std::vector<TokenId> out;
  for (const std::string& piece : tokenizer.pre_tokenize(text)) {
    TokenId whole = tokenizer.token_id(piece);
    if (whole >= 0) {
      out.push_back(whole);
      continue;
    }
    std::vector<TokenId> parts;
    for (unsigned char byte : piece) parts.push_back(tokenizer.byte_token(byte));
    while (parts.size() > 1) {
      std::int32_t best_rank = std::numeric_limits<std::int32_t>::max();
      std::size_t best = 0;
      TokenId best_merged = -1;
      for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        TokenId merged = -1;
        std::int32_t rank = tokenizer.merge_rank(parts[i], parts[i + 1], &merged);
        if (rank >= 0 && rank < best_rank) {
          best_rank = rank;
          best = i;
          best_merged = merged;
        }
      }
      if (best_merged < 0) break;
      parts[best] = best_merged;
      parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
    out.insert(out.end(), parts.begin(), parts.end());
  }
  return out;
}

struct Measurement {
  double seconds = 0;
  std::size_t tokens = 0;
  std::vector<std::vector<TokenId>> ids;
};

template <typename Encode>
Measurement measure(const std::vector<std::string>& texts, int passes, Encode&& encode) {
  Measurement result;
  Stopwatch watch;
  for (int pass = 0; pass < passes; ++pass) {
    result.ids.clear();
    for (const auto& text : texts) {
      result.ids.push_back(encode(text));
      result.tokens += result.ids.back().size();
    }
  }
  result.seconds = watch.seconds();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string tokenizer_path = argc > 1 ? argv[1] : METAREUSE_DEFAULT_TOKENIZER;
  const std::string corpus_path = argc > 2 ? argv[2] : METAREUSE_DEFAULT_GSM8K;
  const int passes = argc > 3 ? std::atoi(argv[3]) : 3;

  std::vector<std::string> texts;
  std::size_t bytes = 0;
  {
    std::ifstream in(corpus_path);
    if (!in) {
      fmt::print(stderr, "cannot open {} (GSM8K train.jsonl from ../shared)\n", corpus_path);
      return 1;
    }
    std::string line;
    while (std::getline(in, line)) {
      auto record = nlohmann::json::parse(line);
      for (const char* field : {"question", "answer"}) {
        texts.push_back(record[field].get<std::string>());
        bytes += texts.back().size();
      }
    }
  }
  Stopwatch load_watch;
  auto loaded = load_tokenizer(tokenizer_path);
  double load_seconds = load_watch.seconds();
  auto* tokenizer = dynamic_cast<ByteLevelBpeTokenizer*>(loaded.get());
  if (tokenizer == nullptr) {
    fmt::print(stderr, "{} is not a byte-level BPE tokenizer\n", tokenizer_path);
    return 1;
  }
  const double megabytes = static_cast<double>(bytes) * passes / 1e6;
  fmt::print("corpus {}: {} texts, {:.2f} MB; {} pass(es); tokenizer loaded in {:.2f} s ({})\n", corpus_path,
             texts.size(), bytes / 1e6, passes, load_seconds, tokenizer->identity());

  Measurement cold = measure(texts, 1, [&](const std::string& text) { return tokenizer->encode(text); });
  Measurement cached = measure(texts, passes, [&](const std::string& text) { return tokenizer->encode(text); });
  auto pieces = [&](const std::string& text) { return std::vector<TokenId>(tokenizer->pre_tokenize(text).size()); };
  Measurement split = measure(texts, passes, pieces);
  tokenizer->set_ascii_fast_path(false);
  Measurement regex_only = measure(texts, passes, [&](const std::string& text) { return tokenizer->encode(text); });
  Measurement split_regex_only = measure(texts, passes, pieces);
  tokenizer->set_cache_enabled(false);
  Measurement uncached = measure(texts, passes, [&](const std::string& text) { return tokenizer->encode(text); });
  Measurement naive = measure(texts, passes, [&](const std::string& text) { return naive_encode(*tokenizer, text); });

  bool identical = cached.ids == uncached.ids && cached.ids == naive.ids && cached.ids == cold.ids &&
                   cached.ids == regex_only.ids && split.ids.size() == split_regex_only.ids.size();
  auto rate = [&](const Measurement& m, double mb) { return mb / m.seconds; };
  fmt::print("encode, piece cache (first pass, cold) {:8.2f} MB/s\n", rate(cold, bytes / 1e6));
  fmt::print("encode, piece cache (warm)             {:8.2f} MB/s  {:.2f} M tokens/s\n", rate(cached, megabytes),
             cached.tokens / cached.seconds / 1e6);
  fmt::print("baseline: cache, PCRE2 for every piece {:8.2f} MB/s\n", rate(regex_only, megabytes));
  fmt::print("baseline: PCRE2 only, no cache        {:8.2f} MB/s\n", rate(uncached, megabytes));
  fmt::print("baseline: naive pair re-scan, PCRE2, no cache {:8.2f} MB/s\n", rate(naive, megabytes));
  fmt::print("pre-tokenizer alone: ASCII fast path + PCRE2 {:8.2f} MB/s; PCRE2 JIT alone {:8.2f} MB/s\n",
             rate(split, megabytes), rate(split_regex_only, megabytes));
  fmt::print("ratio cached / (PCRE2 only, cached) {:.2f}x; / (PCRE2 only, no cache) {:.2f}x; / naive {:.2f}x\n",
             regex_only.seconds / cached.seconds, uncached.seconds / cached.seconds, naive.seconds / cached.seconds);
  fmt::print("ids identical across all encoders: {}\n", identical ? "yes" : "NO");
  fmt::print("tokens per pass {}; peak RSS {}\n", cached.tokens / passes, format_bytes(peak_rss_bytes()));
  return identical ? 0 : 1;
}
