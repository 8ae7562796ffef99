#include "metareuse/patterns/miner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <unordered_set>

#include "candidate_table.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/dist/communicator.h"
#include "metareuse/patterns/text.h"

namespace metareuse::patterns {
namespace {

// Candidates travel between ranks as: u32 length, u32 support, u8 kinds,
// u8 example count, the example keys (u64 each), then the text bytes.
constexpr std::size_t kWireHeader = 4 + 4 + 1 + 1;

std::size_t wire_size(const Candidate& candidate) {
  return kWireHeader + candidate.example_count * sizeof(corpus::RecordKey) + candidate.length;
}

char* write_wire(char* out, const Candidate& candidate) {
  std::memcpy(out, &candidate.length, 4);
  std::memcpy(out + 4, &candidate.support, 4);
  out[8] = static_cast<char>(candidate.kinds);
  out[9] = static_cast<char>(candidate.example_count);
  out += kWireHeader;
  std::memcpy(out, candidate.examples, candidate.example_count * sizeof(corpus::RecordKey));
  out += candidate.example_count * sizeof(corpus::RecordKey);
  std::memcpy(out, candidate.text, candidate.length);
  return out + candidate.length;
}

// Calls visit(text, support, kinds, examples, example_count) for each candidate in `bytes`.
template <typename Visit>
void read_wire(const std::vector<char>& bytes, Visit&& visit) {
  const char* position = bytes.data();
  const char* end = bytes.data() + bytes.size();
  corpus::RecordKey examples[kMaxExamples];
  while (position < end) {
    std::uint32_t length, support;
    std::memcpy(&length, position, 4);
    std::memcpy(&support, position + 4, 4);
    auto kinds = static_cast<std::uint8_t>(position[8]);
    auto example_count = static_cast<std::uint8_t>(position[9]);
    position += kWireHeader;
    std::memcpy(examples, position, example_count * sizeof(corpus::RecordKey));
    position += example_count * sizeof(corpus::RecordKey);
    visit(std::string_view(position, length), support, kinds, examples, example_count);
    position += length;
  }
}

// The owner of a candidate, from its table hash (the same on every rank) but
// not from the bits that pick its slot.
int owner_of(const Candidate& candidate, int world_size) {
  return static_cast<int>((candidate.hash >> 32) % static_cast<std::uint64_t>(world_size));
}

// The pattern order: support descending, then the text's UTF-8 bytes.
bool pattern_before(const Candidate& a, const Candidate& b) {
  if (a.support != b.support) return a.support > b.support;
  return a.view() < b.view();
}

bool is_abbreviation(std::string_view word) {
  static const char* const kAbbreviations[] = {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.",
                                               "etc.", "e.g.", "i.e.", "approx.", "prof.", "mt.", "ft.", "lb.", "oz."};
  for (const char* abbreviation : kAbbreviations) {
    if (word == abbreviation) return true;
  }
  return false;
}

bool ends_sentence(std::string_view word) {
  char last = word.back();
  return (last == '.' || last == '!' || last == '?') && !is_abbreviation(word);
}

bool ends_clause(std::string_view word) {
  char last = word.back();
  return last == ',' || last == ';' || last == ':';
}

std::string_view trim_trailing_punctuation(std::string_view word) {
  while (word.size() > 1 && std::strchr(".,;:!?", word.back()) != nullptr) word.remove_suffix(1);
  return word;
}

// An arithmetic operator alone: a phrase that ends with one is a cut equation.
bool is_operator(std::string_view word) {
  return word == "=" || word == "+" || word == "-" || word == "*" || word == "/" || word == "x" || word == "\u00d7" ||
         word == "\u2013";
}

// Bytes of leading punctuation before a letter, a digit or "<num>" ("$" of
// "$<num>", "(" of "(the"); 0 when there are none or nothing follows them.
std::size_t leading_punctuation(std::string_view word) {
  std::size_t i = 0;
  auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  while (i < word.size() && !alnum(word[i]) && word.compare(i, 5, "<num>") != 0) ++i;
  return i == word.size() ? 0 : i;
}

// Normalized mode's candidates of one record: its sentences and the word
// n-grams of each clause, each with a content word (a word with a letter that
// is not a stop word), so that runs of numbers, operators and function words
// ("<num> x <num> =", "so he has <num>") are filtered out as filler.
// A phrase whose first word starts with punctuation ("$<num> = $<num> left")
// also counts without it ("<num> = $<num> left"): a word-aligned match of the
// shorter text is found wherever the longer one is, and after "<num>" too.
constexpr std::uint32_t kMinContentWords = 1;
class NormalizedMiner {
 public:
  explicit NormalizedMiner(const MiningOptions& options) : options_(options) {}

  // sink(text, hash_words(text), kind) for each candidate of the record
  // (repeats included).
  template <typename Sink>
  void mine(std::string_view reasoning, Sink&& sink) {
    normalize_lines(reasoning, text_);
    std::string_view all(text_);
    std::size_t line_start = 0;
    while (line_start < all.size()) {
      std::size_t line_end = all.find('\n', line_start);
      if (line_end == std::string_view::npos) line_end = all.size();
      mine_line(all.substr(line_start, line_end - line_start), sink);
      line_start = line_end + 1;
    }
  }

 private:
  template <typename Sink>
  void mine_line(std::string_view line, Sink& sink) {
    words_.clear();
    std::size_t start = 0;
    while (start < line.size()) {
      std::size_t end = line.find(' ', start);
      if (end == std::string_view::npos) end = line.size();
      words_.push_back(line.substr(start, end - start));
      start = end + 1;
    }
    // content_prefix_[i] = content words among words_[0, i); the hash of each
    // word, and of the word without trailing punctuation (a phrase's last word).
    content_prefix_.assign(words_.size() + 1, 0);
    word_hashes_.resize(words_.size());
    trimmed_hashes_.resize(words_.size());
    lead_.resize(words_.size());
    lead_hashes_.resize(words_.size());
    for (std::size_t i = 0; i < words_.size(); ++i) {
      content_prefix_[i + 1] = content_prefix_[i] + (is_content_word(words_[i]) ? 1 : 0);
      word_hashes_[i] = hash_word(words_[i]);
      std::string_view trimmed = trim_trailing_punctuation(words_[i]);
      trimmed_hashes_[i] = trimmed.size() == words_[i].size() ? word_hashes_[i] : hash_word(trimmed);
      lead_[i] = static_cast<std::uint32_t>(leading_punctuation(words_[i]));
      lead_hashes_[i] = lead_[i] == 0 ? word_hashes_[i] : hash_word(words_[i].substr(lead_[i]));
    }
    std::size_t sentence_begin = 0;
    for (std::size_t i = 0; i < words_.size(); ++i) {
      if (i + 1 == words_.size() || ends_sentence(words_[i])) {
        mine_sentence(sentence_begin, i + 1, sink);
        sentence_begin = i + 1;
      }
    }
  }

  std::string_view span(std::size_t begin, std::size_t end, bool trim_last, std::size_t lead = 0) const {
    std::string_view last = trim_last ? trim_trailing_punctuation(words_[end - 1]) : words_[end - 1];
    const char* first = words_[begin].data() + lead;
    return {first, static_cast<std::size_t>(last.data() + last.size() - first)};
  }

  bool enough_content(std::size_t begin, std::size_t end) const {
    return content_prefix_[end] - content_prefix_[begin] >= kMinContentWords;
  }

  template <typename Sink>
  void mine_sentence(std::size_t begin, std::size_t end, Sink& sink) {
    const std::size_t min_words = options_.min_words;
    if (end - begin >= min_words && enough_content(begin, end)) {
      std::uint64_t chain = kChainSeed;
      for (std::size_t i = begin; i < end; ++i) chain = hash_chain(chain, word_hashes_[i]);
      sink(span(begin, end, false), chain, kKindSentence);
    }
    std::size_t clause_begin = begin;
    for (std::size_t i = begin; i < end; ++i) {
      if (i + 1 != end && !ends_clause(words_[i])) continue;
      std::size_t clause_end = i + 1;
      for (std::size_t first = clause_begin; first + min_words <= clause_end; ++first) {
        if (!enough_content(first, std::min(first + options_.max_phrase_words, clause_end))) continue;
        std::size_t longest = std::min(options_.max_phrase_words, clause_end - first);
        for (bool stripped : {false, true}) {
          if (stripped && (lead_[first] == 0 || longest < 2)) break;
          // (the stripped form starts with the second word's hash, so one-word phrases are left out)
          std::uint64_t chain = stripped ? hash_chain(kChainSeed, lead_hashes_[first]) : kChainSeed;
          for (std::size_t count = stripped ? 2 : 1; count <= longest; ++count) {
            std::size_t last = first + count - 1;
            bool at_clause_end = last + 1 == clause_end;
            std::uint64_t hash = hash_chain(chain, at_clause_end ? trimmed_hashes_[last] : word_hashes_[last]);
            chain = hash_chain(chain, word_hashes_[last]);
            if (count < min_words || !enough_content(first, first + count) || is_operator(words_[last])) continue;
            sink(span(first, first + count, at_clause_end, stripped ? lead_[first] : 0), hash, kKindPhrase);
          }
        }
      }
      clause_begin = clause_end;
    }
  }

  const MiningOptions& options_;
  std::string text_;
  std::vector<std::string_view> words_;
  std::vector<std::uint32_t> content_prefix_;
  std::vector<std::uint64_t> word_hashes_;
  std::vector<std::uint64_t> trimmed_hashes_;
  std::vector<std::uint32_t> lead_;  // leading_punctuation() of each word
  std::vector<std::uint64_t> lead_hashes_;  // the hash of each word without it
};

Pattern to_pattern(const Candidate& candidate, const std::vector<std::string>& files) {
  Pattern pattern;
  pattern.text = std::string(candidate.view());
  pattern.support = candidate.support;
  pattern.kind = (candidate.kinds & kKindSentence) != 0 ? "sentence" : "phrase";
  for (std::size_t i = 0; i < candidate.example_count; ++i) {
    pattern.examples.push_back(corpus::record_key_name(candidate.examples[i], files));
  }
  pattern.behavior = behavior_name(pattern.text);
  return pattern;
}

// Normalized mode, step 1: marks each pool pattern inside a longer one found
// in nearly as many records (`records[i]` for pool[i]): the longer says the
// same and more.
std::vector<bool> absorbed_patterns(const std::vector<Candidate>& pool, const std::vector<std::uint64_t>& records,
                                    double ratio) {
  std::vector<bool> absorbed(pool.size(), false);
  for (std::size_t shorter = 0; shorter < pool.size(); ++shorter) {
    for (std::size_t longer = 0; longer < pool.size() && !absorbed[shorter]; ++longer) {
      if (pool[longer].length <= pool[shorter].length) continue;
      if (static_cast<double>(records[longer]) < ratio * static_cast<double>(records[shorter])) continue;
      absorbed[shorter] = contains_word_aligned(pool[longer].view(), pool[shorter].view());
    }
  }
  return absorbed;
}

bool overlaps_any(const Candidate& candidate, const std::vector<std::size_t>& chosen, const std::vector<Candidate>& pool) {
  return std::any_of(chosen.begin(), chosen.end(), [&](std::size_t kept) {
    return contains_word_aligned(pool[kept].view(), candidate.view()) ||
           contains_word_aligned(candidate.view(), pool[kept].view());
  });
}

// Finds which pool patterns occur in a normalised text under the rule that
// --holdout and the quality target use: a word-aligned substring. The spaces of
// a pattern of three or more words fall on the text's spaces, so its second
// word is a whole word of the text, while its first and last words may be the
// end and the start of longer text words ("<num> = <num> hours" occurs in
// "$<num> = <num> hours."). Patterns are indexed by the hash of their second
// word, and each text word looks up the patterns it could be the second word
// of; patterns of one or two words are searched for directly.
class PoolMatcher {
 public:
  explicit PoolMatcher(const std::vector<Candidate>& pool) : pool_(pool) {
    for (std::uint32_t i = 0; i < pool.size(); ++i) {
      std::string_view text = pool[i].view();
      std::size_t first_space = text.find(' ');
      std::size_t second_space = first_space == std::string_view::npos ? first_space : text.find(' ', first_space + 1);
      if (second_space == std::string_view::npos) {
        short_patterns_.push_back(i);
        continue;
      }
      std::string_view second_word = text.substr(first_space + 1, second_space - first_space - 1);
      by_second_word_.push_back({hash_word(second_word), i, static_cast<std::uint32_t>(first_space)});
    }
    std::sort(by_second_word_.begin(), by_second_word_.end(), by_hash);
  }

  // Appends the indices of the pool patterns in `text` to `found` (repeats included).
  void match(std::string_view text, std::vector<std::uint32_t>& found) const {
    std::size_t word_start = 0;
    while (word_start < text.size()) {
      std::size_t word_end = text.find(' ', word_start);
      if (word_end == std::string_view::npos) word_end = text.size();
      if (word_start > 0) {
        std::uint64_t hash = hash_word(text.substr(word_start, word_end - word_start));
        auto range = std::equal_range(by_second_word_.begin(), by_second_word_.end(), Entry{hash, 0, 0}, by_hash);
        for (auto entry = range.first; entry != range.second; ++entry) {
          // The pattern's first word ends at the space before this word.
          if (entry->first_word_length + 1 > word_start) continue;
          std::size_t start = word_start - 1 - entry->first_word_length;
          if (aligned_at(text, pool_[entry->index].view(), start)) found.push_back(entry->index);
        }
      }
      word_start = word_end + 1;
    }
    for (std::uint32_t i : short_patterns_) {
      if (contains_word_aligned(text, pool_[i].view())) found.push_back(i);
    }
  }

 private:
  struct Entry {
    std::uint64_t word_hash;
    std::uint32_t index;
    std::uint32_t first_word_length;
  };
  static bool by_hash(const Entry& a, const Entry& b) { return a.word_hash < b.word_hash; }

  // contains_word_aligned's test at one position.
  static bool aligned_at(std::string_view text, std::string_view pattern, std::size_t start) {
    if (start + pattern.size() > text.size() || text.compare(start, pattern.size(), pattern) != 0) return false;
    auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    std::size_t end = start + pattern.size();
    bool before_ok = !alnum(pattern.front()) || start == 0 || !alnum(text[start - 1]);
    bool after_ok = !alnum(pattern.back()) || end == text.size() || !alnum(text[end]);
    return before_ok && after_ok;
  }

  const std::vector<Candidate>& pool_;
  std::vector<Entry> by_second_word_;
  std::vector<std::uint32_t> short_patterns_;
};

// Normalized mode, coverage selection: greedy maximum coverage. Absorbed
// patterns (step 1, by the records each pattern is found in) are left out.
// Each round takes the pool pattern found in the most records not yet covered (summed over ranks, so the
// choice is the same at any rank count; ties go to the pattern order), never
// one that contains or is contained in a chosen pattern. A second pass over
// this rank's share finds which pool patterns each record holds, by the rule
// coverage is measured with (PoolMatcher): a pattern that starts or ends with
// "<num>" or "=" also occurs after "$" or before "." or "/", which counting the
// phrase candidates alone would miss.
std::vector<std::size_t> choose_by_coverage(const std::vector<std::string>& files, const MiningOptions& options,
                                            const std::vector<Candidate>& pool, Communicator& communicator) {
  PoolMatcher matcher(pool);
  // record_patterns[record_offsets[r] .. record_offsets[r + 1]): pool indices in local record r.
  std::vector<std::uint32_t> record_patterns;
  std::vector<std::uint64_t> record_offsets = {0};
  std::vector<std::uint32_t> found;
  std::string text;
  corpus::ReadOptions quiet = options.read;
  quiet.max_reported_per_rank = 0;  // the first pass reported them
  corpus::read_corpus(files, quiet, communicator, [&](const corpus::Record& record) {
    found.clear();
    normalize_lines(record.reasoning, text);
    std::replace(text.begin(), text.end(), '\n', ' ');  // normalize(), without a new string per record
    matcher.match(text, found);
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    record_patterns.insert(record_patterns.end(), found.begin(), found.end());
    record_offsets.push_back(record_patterns.size());
  });
  const std::size_t records = record_offsets.size() - 1;
  std::vector<std::uint64_t> pattern_records(pool.size(), 0);
  for (std::uint32_t index : record_patterns) ++pattern_records[index];
  communicator.allreduce(pattern_records, ReduceOp::kSum);
  const std::vector<bool> absorbed = absorbed_patterns(pool, pattern_records, options.containment_ratio);
  std::vector<bool> covered(records, false);
  std::vector<std::size_t> chosen;
  std::vector<std::uint64_t> gains(pool.size());
  while (options.top_k == 0 || chosen.size() < options.top_k) {
    std::fill(gains.begin(), gains.end(), 0);
    for (std::size_t r = 0; r < records; ++r) {
      if (covered[r]) continue;
      for (std::uint64_t i = record_offsets[r]; i < record_offsets[r + 1]; ++i) ++gains[record_patterns[i]];
    }
    communicator.allreduce(gains, ReduceOp::kSum);
    std::size_t best = pool.size();
    for (std::size_t i = 0; i < pool.size(); ++i) {
      if (absorbed[i] || gains[i] == 0 || (best != pool.size() && gains[i] <= gains[best])) continue;
      if (std::find(chosen.begin(), chosen.end(), i) != chosen.end() || overlaps_any(pool[i], chosen, pool)) continue;
      best = i;
    }
    if (best == pool.size()) break;  // nothing left adds coverage
    chosen.push_back(best);
    for (std::size_t r = 0; r < records; ++r) {
      if (covered[r]) continue;
      for (std::uint64_t i = record_offsets[r]; i < record_offsets[r + 1]; ++i) {
        if (record_patterns[i] == best) covered[r] = true;
      }
    }
  }
  // Fill up in pattern order when coverage alone runs out.
  for (std::size_t i = 0; i < pool.size() && (options.top_k == 0 || chosen.size() < options.top_k); ++i) {
    if (!absorbed[i] && std::find(chosen.begin(), chosen.end(), i) == chosen.end() &&
        !overlaps_any(pool[i], chosen, pool)) {
      chosen.push_back(i);
    }
  }
  return chosen;
}

// Normalized mode, support selection: the first top_k in pattern order that
// are not absorbed (step 1, by support) and of which none contains another.
std::vector<std::size_t> choose_by_support(const std::vector<Candidate>& pool, const MiningOptions& options) {
  std::vector<std::uint64_t> supports;
  for (const Candidate& candidate : pool) supports.push_back(candidate.support);
  const std::vector<bool> absorbed = absorbed_patterns(pool, supports, options.containment_ratio);
  std::vector<std::size_t> chosen;
  for (std::size_t i = 0; i < pool.size() && (options.top_k == 0 || chosen.size() < options.top_k); ++i) {
    if (!absorbed[i] && !overlaps_any(pool[i], chosen, pool)) chosen.push_back(i);
  }
  return chosen;
}

}  // namespace

const char* mining_mode_name(MiningMode mode) { return mode == MiningMode::kExact ? "exact" : "normalized"; }

MiningMode parse_mining_mode(const std::string& name) {
  if (name == "exact") return MiningMode::kExact;
  if (name == "normalized" || name == "normalised") return MiningMode::kNormalized;
  throw ConfigError(fmt::format("pattern mode must be exact or normalized, got '{}'", name));
}

MiningResult mine_patterns(const std::vector<std::string>& files, const MiningOptions& options,
                           Communicator& communicator) {
  const int world_size = communicator.size();
  const int rank = communicator.rank();
  MiningResult result;
  Stopwatch watch;

  const bool exact = options.mode == MiningMode::kExact;
  // 1. Local counting over this rank's share.
  CandidateTable table(/*by_words=*/!exact);
  NormalizedMiner normalized_miner(options);
  std::uint32_t ordinal = 0;
  std::uint64_t pruned = 0;
  std::uint64_t prune_rounds = 0;
  struct Pending {
    std::string_view text;
    std::uint64_t hash;
    std::uint8_t kind;
  };
  std::vector<Pending> batch;
  auto visit = [&](const corpus::Record& record) {
    ++ordinal;
    if (exact) {
      split_seed_sentences(record.reasoning, [&](std::string_view sentence) {
        // "longer than 15 characters" in code points; bytes >= code points.
        if (sentence.size() <= 15 || (sentence.size() <= 60 && code_point_count(sentence) <= 15)) return;
        table.count(sentence, hash_text(sentence), ordinal, record.key, kKindSentence);
      });
    } else {
      // A record's candidates are gathered first and their slots prefetched
      // together: the misses overlap instead of queueing one by one.
      batch.clear();
      normalized_miner.mine(record.reasoning, [&](std::string_view text, std::uint64_t hash, std::uint8_t kind) {
        batch.push_back({text, hash, kind});
      });
      for (const Pending& pending : batch) table.prefetch(pending.hash);
      for (const Pending& pending : batch) table.count(pending.text, pending.hash, ordinal, record.key, pending.kind);
    }
    if (options.max_candidates != 0 && table.size() >= options.max_candidates) {
      // Graceful degradation: drop the rarest local candidates until a quarter is free.
      std::uint32_t threshold = 1;
      while (table.size() > options.max_candidates * 3 / 4) {
        pruned += table.prune(threshold++);
      }
      ++prune_rounds;
    }
  };
  corpus::CorpusStats local_stats = corpus::read_corpus(files, options.read, communicator, visit);
  result.local_candidates = table.size();
  result.seconds_count = watch.seconds();
  watch.reset();

  // 2. Exact reduction: each candidate goes to its owner rank, which sums.
  std::vector<char> received;
  CandidateTable owned(/*by_words=*/!exact);
  CandidateTable* owner_table = &table;
  if (world_size > 1) {
    std::vector<std::size_t> send_counts(world_size, 0);
    table.for_each([&](const Candidate& candidate) {
      send_counts[owner_of(candidate, world_size)] += wire_size(candidate);
    });
    std::vector<std::size_t> offsets(world_size, 0);
    for (int r = 1; r < world_size; ++r) offsets[r] = offsets[r - 1] + send_counts[r - 1];
    std::vector<char> send(offsets.back() + send_counts.back());
    table.for_each([&](const Candidate& candidate) {
      int owner = owner_of(candidate, world_size);
      offsets[owner] = static_cast<std::size_t>(write_wire(send.data() + offsets[owner], candidate) - send.data());
    });
    table.clear();  // the counts now live in `send`
    log::debug("reduction: packed {} bytes in {:.2f} s", send.size(), watch.seconds());

    std::vector<std::uint64_t> my_counts(send_counts.begin(), send_counts.end());
    std::vector<std::uint64_t> matrix(static_cast<std::size_t>(world_size) * world_size);
    communicator.allgather(my_counts.data(), matrix.data(), world_size, DType::kUInt64);
    std::vector<std::size_t> receive_counts(world_size);
    std::size_t receive_total = 0;
    for (int r = 0; r < world_size; ++r) {
      receive_counts[r] = matrix[static_cast<std::size_t>(r) * world_size + rank];
      receive_total += receive_counts[r];
    }
    received.resize(receive_total);
    communicator.alltoallv(send.data(), send_counts, received.data(), receive_counts, DType::kUInt8);
    send = {};
    log::debug("reduction: exchanged, {} bytes received, at {:.2f} s", received.size(), watch.seconds());
    std::size_t arriving = 0;
    read_wire(received, [&](std::string_view, std::uint32_t, std::uint8_t, const corpus::RecordKey*, std::size_t) {
      ++arriving;
    });
    owned.reserve(arriving);  // an upper bound: the same text may come from several ranks
    read_wire(received, [&](std::string_view text, std::uint32_t support, std::uint8_t kinds,
                            const corpus::RecordKey* examples, std::size_t example_count) {
      owned.merge(text, support, kinds, examples, example_count);
    });
    owner_table = &owned;
    log::debug("reduction: merged {} candidates at {:.2f} s", owned.size(), watch.seconds());
  }

  // 3. Select at the owner: enough support (and, normalized, enough words),
  // in pattern order, at most the pool size.
  std::vector<Candidate> qualified;
  owner_table->for_each([&](const Candidate& candidate) {
    // (normalized candidates have at least min_words words by construction)
    if (candidate.support >= options.min_support) qualified.push_back(candidate);
  });
  std::uint64_t local_qualified = qualified.size();
  std::size_t pool_size = exact ? options.top_k : options.pool_size;
  auto cut_to_pool = [&](std::vector<Candidate>& candidates) {
    if (pool_size != 0 && candidates.size() > pool_size) {
      std::partial_sort(candidates.begin(), candidates.begin() + pool_size, candidates.end(), pattern_before);
      candidates.resize(pool_size);
    } else {
      std::sort(candidates.begin(), candidates.end(), pattern_before);
    }
  };
  cut_to_pool(qualified);

  // 4. Allgather the owners' selections; every rank orders them the same way.
  std::size_t bytes = 0;
  for (const Candidate& candidate : qualified) bytes += wire_size(candidate);
  std::vector<char> selection(bytes);
  char* out = selection.data();
  for (const Candidate& candidate : qualified) out = write_wire(out, candidate);
  std::vector<char> gathered = communicator.allgatherv(selection);
  std::vector<Candidate> pool;
  read_wire(gathered, [&](std::string_view text, std::uint32_t support, std::uint8_t kinds,
                          const corpus::RecordKey* examples, std::size_t example_count) {
    Candidate candidate;
    candidate.text = text.data();
    candidate.length = static_cast<std::uint32_t>(text.size());
    candidate.support = support;
    candidate.kinds = kinds;
    candidate.example_count = static_cast<std::uint8_t>(example_count);
    std::copy(examples, examples + example_count, candidate.examples);
    pool.push_back(candidate);
  });
  cut_to_pool(pool);
  log::debug("reduction: pool of {} at {:.2f} s", pool.size(), watch.seconds());

  std::vector<const Candidate*> chosen;
  if (exact) {
    for (const Candidate& candidate : pool) chosen.push_back(&candidate);
  } else {
    std::vector<std::size_t> picks = options.selection == Selection::kCoverage
                                         ? choose_by_coverage(files, options, pool, communicator)
                                         : choose_by_support(pool, options);
    for (std::size_t i : picks) chosen.push_back(&pool[i]);
  }

  // 5. Counts over the job.
  std::vector<std::uint64_t> counts = {owner_table->size(), local_qualified, pruned, prune_rounds};
  communicator.allreduce(counts, ReduceOp::kSum);
  result.global_candidates = counts[0];
  result.qualified = counts[1];
  result.pruned_candidates = counts[2];
  result.corpus = corpus::reduce_stats(local_stats, communicator);
  result.seconds_reduce = watch.seconds();
  if (counts[3] > 0) {
    log::warn("candidate cap ({} per rank) reached: {} rare candidates dropped in {} round(s) over all ranks; "
              "supports are lower bounds and rare patterns may be missing",
              options.max_candidates, counts[2], counts[3]);
  }

  Handbook& handbook = result.handbook;
  handbook.records = result.corpus.records;
  handbook.mode = mining_mode_name(options.mode);
  handbook.exact_counts = counts[3] == 0;
  for (const Candidate* candidate : chosen) handbook.patterns.push_back(to_pattern(*candidate, files));
  // Behavior names must be unique to be usable as keys.
  std::unordered_set<std::string> names;
  for (Pattern& pattern : handbook.patterns) {
    std::string base = pattern.behavior;
    for (int suffix = 2; !names.insert(pattern.behavior).second; ++suffix) pattern.behavior = fmt::format("{}_{}", base, suffix);
  }
  handbook.stats = {{"records", result.corpus.records},
                    {"bad_lines", result.corpus.bad_lines},
                    {"blank_lines", result.corpus.blank_lines},
                    {"candidates", result.global_candidates},
                    {"qualified", result.qualified},
                    {"patterns", handbook.patterns.size()},
                    {"pruned_candidates", result.pruned_candidates},
                    {"ranks", world_size}};
  handbook.config = {{"mode", handbook.mode},
                     {"min_support", options.min_support},
                     {"top_k", options.top_k},
                     {"min_words", options.min_words},
                     {"max_phrase_words", options.max_phrase_words},
                     {"max_candidates", options.max_candidates},
                     {"containment_ratio", options.containment_ratio},
                     {"selection", options.selection == Selection::kCoverage ? "coverage" : "support"},
                     {"pool_size", options.pool_size},
                     {"files", files},
                     {"fields",
                      {{"question", options.read.fields.question},
                       {"reasoning", options.read.fields.reasoning},
                       {"solution", options.read.fields.solution}}}};
  return result;
}

Coverage holdout_coverage(const std::vector<Pattern>& patterns, const std::vector<std::string>& holdout_files,
                          const corpus::ReadOptions& read, Communicator& communicator) {
  std::vector<std::string> normalized_patterns;
  for (const Pattern& pattern : patterns) {
    std::string text = normalize(pattern.text);
    if (!text.empty()) normalized_patterns.push_back(std::move(text));
  }
  std::vector<std::uint64_t> counts = {0, 0};
  corpus::read_corpus(holdout_files, read, communicator, [&](const corpus::Record& record) {
    std::string text = normalize(record.reasoning);
    ++counts[0];
    for (const std::string& pattern : normalized_patterns) {
      if (contains_word_aligned(text, pattern)) {
        ++counts[1];
        break;
      }
    }
  });
  communicator.allreduce(counts, ReduceOp::kSum);
  return {counts[0], counts[1]};
}

}  // namespace metareuse::patterns
