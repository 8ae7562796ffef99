// The second pass: each rank counts the sentences of its share that contain a
// chosen pattern, in a per-pattern sample (SentenceCountOptions::sample); the
// samples go to the pattern's owner rank (pattern index % ranks), which sums
// them, cuts the sum to the sample and ranks it; the owners' best sentences
// are allgathered.
//
// Why the sample is the same at any rank count: it keeps the sentences that
// come first in one fixed order (SampleKey). A sentence among the first
// `sample` of the whole corpus is also among the first `sample` of any share
// holding it, so every rank kept it and counted each of its records; the owner
// then keeps the same first `sample` of the union, with exact sums.
#include "metareuse/patterns/instructions.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <string_view>
#include <utility>

#include "candidate_table.h"  // Candidate, hash_text
#include "candidates.h"       // split_normalized_sentences
#include "metareuse/core/error.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/text.h"
#include "pool_matcher.h"
#include "reduction.h"  // exchange_buffers
#include "wire.h"

namespace metareuse {
namespace {

using patterns_detail::Candidate;
using patterns_detail::exchange_buffers;
using patterns_detail::hash_text;
using patterns_detail::PoolMatcher;
using patterns_detail::split_normalized_sentences;
using patterns_detail::WireReader;
using patterns_detail::WireWriter;

// The sample's order: full sentences first (so that a sample cut keeps them),
// then the hash of the text, then the text (two texts with one hash).
struct SampleKey {
  bool full = false;
  std::uint64_t hash = 0;
  std::string text;

  bool operator<(const SampleKey& other) const {
    if (full != other.full) return full;
    if (hash != other.hash) return hash < other.hash;
    return text < other.text;
  }
};

// One pattern's sentences: the first `limit` in SampleKey order, with their records.
struct Sample {
  std::map<SampleKey, std::uint64_t> records;
  bool cut = false;  // a sentence was left out or dropped: more than `limit` exist

  void add(SampleKey key, std::uint64_t count, std::size_t limit) {
    auto found = records.find(key);
    if (found != records.end()) {
      found->second += count;
      return;
    }
    if (records.size() == limit) {
      cut = true;
      // A sentence after the last one kept stays out for good: the last only moves forward.
      auto last = std::prev(records.end());
      if (!(key < last->first)) return;
      records.erase(last);
    }
    records.emplace(std::move(key), count);
  }
};

std::size_t word_count(std::string_view text) { return split_words(text).size(); }

// The best first (instructions.h): full, more records, fewer words, bytes.
bool better(const std::pair<const SampleKey*, std::uint64_t>& a, const std::pair<const SampleKey*, std::uint64_t>& b) {
  if (a.first->full != b.first->full) return a.first->full;
  if (a.second != b.second) return a.second > b.second;
  const std::size_t words_a = word_count(a.first->text), words_b = word_count(b.first->text);
  if (words_a != words_b) return words_a < words_b;
  return a.first->text < b.first->text;
}

// This rank's share: the samples of every pattern.
std::vector<Sample> count_share(const std::vector<std::string>& files, const std::vector<std::string>& patterns,
                                const SentenceCountOptions& options, Communicator& communicator) {
  std::vector<Candidate> pool(patterns.size());
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    pool[i].text = patterns[i].data();
    pool[i].length = static_cast<std::uint32_t>(patterns[i].size());
  }
  const PoolMatcher matcher(pool);
  std::vector<Sample> samples(patterns.size());
  ReadOptions read = options.read;
  read.number_lines_after = true;  // the record keys are not used here
  std::string normalized;
  std::vector<std::uint32_t> found;
  std::vector<std::pair<std::uint32_t, std::string_view>> hits;  // (pattern, sentence) of one record
  read_corpus(files, read, communicator, [&](const Record& record) {
    normalize_lines(record.reasoning, normalized);
    hits.clear();
    split_normalized_sentences(normalized, [&](std::string_view sentence) {
      found.clear();
      matcher.match(sentence, found);
      for (std::uint32_t pattern : found) hits.emplace_back(pattern, sentence);
    });
    // A sentence counts once per record, as support does.
    std::sort(hits.begin(), hits.end());
    hits.erase(std::unique(hits.begin(), hits.end()), hits.end());
    for (const auto& [pattern, sentence] : hits) {
      SampleKey key{is_full_sentence(behavior_instruction(sentence)), hash_text(sentence), std::string(sentence)};
      samples[pattern].add(std::move(key), 1, options.sample);
    }
  });
  return samples;
}

}  // namespace

std::vector<ContainingSentences> count_containing_sentences(const std::vector<std::string>& files,
                                                            const std::vector<std::string>& patterns,
                                                            const SentenceCountOptions& options,
                                                            Communicator& communicator) {
  if (options.sample == 0) throw ConfigError("patterns.instruction_sample must be >= 1");
  for (const std::string& pattern : patterns) {
    if (pattern.empty()) throw InputError("count_containing_sentences: an empty pattern contains nothing");
  }
  if (patterns.empty()) return {};  // (the same on every rank)
  const int world_size = communicator.size();
  std::vector<Sample> local = count_share(files, patterns, options, communicator);

  // To the owners. A block per pattern: u32 pattern, u8 cut, u32 sentences,
  // then per sentence u8 full, u64 hash, u64 records, u32 length, the text.
  std::vector<std::vector<char>> outgoing(static_cast<std::size_t>(world_size));
  for (std::uint32_t pattern = 0; pattern < local.size(); ++pattern) {
    const Sample& sample = local[pattern];
    if (sample.records.empty() && !sample.cut) continue;
    WireWriter out(outgoing[pattern % static_cast<std::uint32_t>(world_size)]);
    out.put<std::uint32_t>(pattern);
    out.put<std::uint8_t>(sample.cut ? 1 : 0);
    out.put<std::uint32_t>(static_cast<std::uint32_t>(sample.records.size()));
    for (const auto& [key, records] : sample.records) {
      out.put<std::uint8_t>(key.full ? 1 : 0);
      out.put<std::uint64_t>(key.hash);
      out.put<std::uint64_t>(records);
      out.put<std::uint32_t>(static_cast<std::uint32_t>(key.text.size()));
      out.put_bytes(key.text.data(), key.text.size());
    }
  }
  local = {};
  std::vector<char> arriving;
  exchange_buffers(communicator, outgoing, arriving);
  std::map<std::uint32_t, Sample> owned;
  for (WireReader in({arriving.data(), arriving.size()}); !in.done();) {
    Sample& sample = owned[in.get<std::uint32_t>()];
    const bool cut = in.get<std::uint8_t>() != 0;  // read whatever sample.cut is already
    sample.cut = sample.cut || cut;
    const auto sentences = in.get<std::uint32_t>();
    for (std::uint32_t i = 0; i < sentences; ++i) {
      SampleKey key;
      key.full = in.get<std::uint8_t>() != 0;
      key.hash = in.get<std::uint64_t>();
      const auto records = in.get<std::uint64_t>();
      key.text = std::string(in.get_bytes(in.get<std::uint32_t>()));
      sample.add(std::move(key), records, options.sample);
    }
  }

  // The owners' best, to every rank. A block per pattern: u32 pattern, u8 cut,
  // u64 counted, u32 kept, then per sentence u8 full, u64 records, u32 length, the text.
  std::vector<char> best;
  WireWriter out(best);
  for (const auto& [pattern, sample] : owned) {
    std::vector<std::pair<const SampleKey*, std::uint64_t>> ranked;
    for (const auto& [key, records] : sample.records) ranked.emplace_back(&key, records);
    const std::size_t kept = std::min(options.keep, ranked.size());
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(kept), ranked.end(), better);
    out.put<std::uint32_t>(pattern);
    out.put<std::uint8_t>(sample.cut ? 1 : 0);
    out.put<std::uint64_t>(sample.records.size());
    out.put<std::uint32_t>(static_cast<std::uint32_t>(kept));
    for (std::size_t i = 0; i < kept; ++i) {
      out.put<std::uint8_t>(ranked[i].first->full ? 1 : 0);
      out.put<std::uint64_t>(ranked[i].second);
      out.put<std::uint32_t>(static_cast<std::uint32_t>(ranked[i].first->text.size()));
      out.put_bytes(ranked[i].first->text.data(), ranked[i].first->text.size());
    }
  }
  owned = {};
  const std::vector<char> all = communicator.allgatherv(best);
  std::vector<ContainingSentences> result(patterns.size());
  for (WireReader in({all.data(), all.size()}); !in.done();) {
    ContainingSentences& pattern = result.at(in.get<std::uint32_t>());
    pattern.sampled = in.get<std::uint8_t>() != 0;
    pattern.counted = in.get<std::uint64_t>();
    const auto kept = in.get<std::uint32_t>();
    for (std::uint32_t i = 0; i < kept; ++i) {
      pattern.full.push_back(in.get<std::uint8_t>() != 0);
      pattern.records.push_back(in.get<std::uint64_t>());
      pattern.sentences.emplace_back(in.get_bytes(in.get<std::uint32_t>()));
    }
  }
  return result;
}

}  // namespace metareuse
