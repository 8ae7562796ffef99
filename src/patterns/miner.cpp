#include "metareuse/patterns/miner.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <unordered_set>

#include "candidate_table.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/dist/communicator.h"
#include "metareuse/patterns/text.h"
#include "pool_matcher.h"
#include "record_groups.h"
#include "selection.h"
#include "wire.h"

namespace metareuse::patterns {
namespace {

// A candidate on the wire: u32 length, u32 support, u8 kinds, u8 example
// count, the example keys, then the text (not the hash: the receiver hashes
// the text again where it needs one).
void write_candidate(WireWriter& out, const Candidate& candidate) {
  out.put<std::uint32_t>(candidate.length);
  out.put<std::uint32_t>(candidate.support);
  out.put<std::uint8_t>(candidate.kinds);
  out.put<std::uint8_t>(candidate.example_count);
  out.put_array<corpus::RecordKey>(candidate.examples, candidate.example_count);
  out.put_bytes(candidate.text, candidate.length);
}

// Calls visit(const Candidate&) for each candidate write_candidate() put in
// `bytes`: its text points into them, its hash is 0.
template <typename Visit>
void read_candidates(std::string_view bytes, Visit&& visit) {
  WireReader in(bytes);
  while (!in.done()) {
    Candidate candidate;
    candidate.length = in.get<std::uint32_t>();
    candidate.support = in.get<std::uint32_t>();
    candidate.kinds = in.get<std::uint8_t>();
    candidate.example_count = in.get<std::uint8_t>();
    in.get_array<corpus::RecordKey>(candidate.examples, candidate.example_count);
    candidate.text = in.get_bytes(candidate.length).data();
    visit(candidate);
  }
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

  // sink(text, hash_words(text), kind) for each candidate of a record's
  // reasoning, already normalised by normalize_lines() (lines cut at '\n'),
  // repeats included; `all` must outlive the sink's use of the texts it is given.
  template <typename Sink>
  void mine_normalized(std::string_view all, Sink&& sink) {
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
    // content_prefix_[i] = content words among words_[0, i); each word's
    // facts (WordFacts) from the cache of the words seen before.
    content_prefix_.assign(words_.size() + 1, 0);
    facts_.resize(words_.size());
    for (std::size_t i = 0; i < words_.size(); ++i) {
      facts_[i] = word_facts(words_[i]);
      content_prefix_[i + 1] = content_prefix_[i] + facts_[i].content;
    }
    std::size_t sentence_begin = 0;
    for (std::size_t i = 0; i < words_.size(); ++i) {
      if (i + 1 == words_.size() || (facts_[i].flags & kEndsSentence) != 0) {
        mine_sentence(sentence_begin, i + 1, sink);
        sentence_begin = i + 1;
      }
    }
  }

  std::string_view span(std::size_t begin, std::size_t end, bool trim_last, std::size_t lead = 0) const {
    std::string_view last = words_[end - 1];
    if (trim_last) last = last.substr(0, facts_[end - 1].trimmed_length);
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
      for (std::size_t i = begin; i < end; ++i) chain = hash_chain(chain, facts_[i].hash);
      sink(span(begin, end, false), chain, kKindSentence);
    }
    std::size_t clause_begin = begin;
    for (std::size_t i = begin; i < end; ++i) {
      if (i + 1 != end && (facts_[i].flags & kEndsClause) == 0) continue;
      std::size_t clause_end = i + 1;
      for (std::size_t first = clause_begin; first + min_words <= clause_end; ++first) {
        if (!enough_content(first, std::min(first + options_.max_phrase_words, clause_end))) continue;
        std::size_t longest = std::min(options_.max_phrase_words, clause_end - first);
        for (bool stripped : {false, true}) {
          if (stripped && (facts_[first].lead == 0 || longest < 2)) break;
          // (the stripped form starts with the second word's hash, so one-word phrases are left out)
          std::uint64_t chain = stripped ? hash_chain(kChainSeed, facts_[first].lead_hash) : kChainSeed;
          for (std::size_t count = stripped ? 2 : 1; count <= longest; ++count) {
            std::size_t last = first + count - 1;
            bool at_clause_end = last + 1 == clause_end;
            std::uint64_t hash = hash_chain(chain, at_clause_end ? facts_[last].trimmed_hash : facts_[last].hash);
            chain = hash_chain(chain, facts_[last].hash);
            if (count < min_words || !enough_content(first, first + count) || (facts_[last].flags & kOperator) != 0) {
              continue;
            }
            sink(span(first, first + count, at_clause_end, stripped ? facts_[first].lead : 0), hash, kKindPhrase);
          }
        }
      }
      clause_begin = clause_end;
    }
  }

  // What the miner needs to know of a word, worked out once per distinct word:
  // the corpus repeats a small vocabulary, and these tests ran for every word.
  static constexpr std::uint8_t kEndsSentence = 1;
  static constexpr std::uint8_t kEndsClause = 2;
  static constexpr std::uint8_t kOperator = 4;
  struct WordFacts {
    std::uint64_t hash = 0;          // hash_word() of the word
    std::uint64_t trimmed_hash = 0;  // ... without trailing punctuation (a phrase's last word)
    std::uint64_t lead_hash = 0;     // ... without leading punctuation (a stripped phrase's first word)
    std::uint32_t trimmed_length = 0;
    std::uint32_t lead = 0;  // leading_punctuation()
    std::uint8_t content = 0;  // is_content_word()
    std::uint8_t flags = 0;  // kEndsSentence, kEndsClause, kOperator
  };

  static WordFacts work_out(std::string_view word, std::uint64_t hash) {
    WordFacts facts;
    facts.hash = hash;
    std::string_view trimmed = trim_trailing_punctuation(word);
    facts.trimmed_length = static_cast<std::uint32_t>(trimmed.size());
    facts.trimmed_hash = trimmed.size() == word.size() ? hash : hash_word(trimmed);
    facts.lead = static_cast<std::uint32_t>(leading_punctuation(word));
    facts.lead_hash = facts.lead == 0 ? hash : hash_word(word.substr(facts.lead));
    facts.content = is_content_word(word) ? 1 : 0;
    facts.flags = static_cast<std::uint8_t>((ends_sentence(word) ? kEndsSentence : 0) |
                                            (ends_clause(word) ? kEndsClause : 0) | (is_operator(word) ? kOperator : 0));
    return facts;
  }

  // The facts of `word`, from the cache (open addressing on the word's hash,
  // the facts in the slot, the texts compared) or worked out and cached, up to
  // kMaxCachedWords words.
  static constexpr std::size_t kMaxCachedWords = std::size_t{1} << 20;
  WordFacts word_facts(std::string_view word) {
    const std::uint64_t hash = hash_word(word);
    if (cache_.empty()) cache_.resize(std::size_t{1} << 12);
    std::size_t mask = cache_.size() - 1;
    std::size_t position = hash & mask;
    for (; cache_[position].length != kNoWord; position = (position + 1) & mask) {
      const CachedWord& cached = cache_[position];
      if (cached.facts.hash == hash && cached.length == word.size() &&
          std::memcmp(cached_text_.data() + cached.offset, word.data(), word.size()) == 0) {
        return cached.facts;
      }
    }
    WordFacts facts = work_out(word, hash);
    if (cached_words_ < kMaxCachedWords && word.size() < kNoWord && cached_text_.size() + word.size() < kNoWord) {
      cache_[position] = {facts, static_cast<std::uint32_t>(cached_text_.size()), static_cast<std::uint32_t>(word.size())};
      cached_text_.append(word);
      if (++cached_words_ * 2 > cache_.size()) {  // keep it at most half full
        std::vector<CachedWord> old = std::move(cache_);
        cache_.assign(old.size() * 2, CachedWord{});
        mask = cache_.size() - 1;
        for (const CachedWord& cached : old) {
          if (cached.length == kNoWord) continue;
          std::size_t at = cached.facts.hash & mask;
          while (cache_[at].length != kNoWord) at = (at + 1) & mask;
          cache_[at] = cached;
        }
      }
    }
    return facts;
  }

  static constexpr std::uint32_t kNoWord = ~std::uint32_t{0};
  struct CachedWord {
    WordFacts facts;
    std::uint32_t offset = 0;  // into cached_text_
    std::uint32_t length = kNoWord;  // kNoWord: an empty slot
  };

  const MiningOptions& options_;
  std::vector<std::string_view> words_;
  std::vector<std::uint32_t> content_prefix_;
  std::vector<WordFacts> facts_;  // of words_[i]
  std::vector<CachedWord> cache_;
  std::size_t cached_words_ = 0;
  std::string cached_text_;
};

// Sends out[offsets of out_counts[r]] to rank r and receives every rank's
// bytes for this one into `in`, in rank order (an alltoallv whose receive
// counts come from an allgather of the send counts).
void exchange_bytes(Communicator& communicator, const char* out, const std::vector<std::size_t>& out_counts,
                    std::vector<char>& in) {
  const int world_size = communicator.size();
  const int rank = communicator.rank();
  std::vector<std::uint64_t> my_counts(out_counts.begin(), out_counts.end());
  std::vector<std::uint64_t> matrix(static_cast<std::size_t>(world_size) * world_size);
  communicator.allgather(my_counts.data(), matrix.data(), world_size, DType::kUInt64);
  std::vector<std::size_t> in_counts(world_size);
  std::size_t total = 0;
  for (int r = 0; r < world_size; ++r) {
    in_counts[r] = matrix[static_cast<std::size_t>(r) * world_size + rank];
    total += in_counts[r];
  }
  in.resize(total);
  communicator.alltoallv(out, out_counts, in.data(), in_counts, DType::kUInt8);
}

// exchange_bytes() for one buffer per destination rank (emptied on the way).
void exchange_buffers(Communicator& communicator, std::vector<std::vector<char>>& outgoing, std::vector<char>& in) {
  std::vector<std::size_t> out_counts(outgoing.size());
  std::vector<char> packed;
  for (std::size_t r = 0; r < outgoing.size(); ++r) {
    out_counts[r] = outgoing[r].size();
    packed.insert(packed.end(), outgoing[r].begin(), outgoing[r].end());
  }
  outgoing = {};
  exchange_bytes(communicator, packed.data(), out_counts, in);
}

// Round 1 of the reduction: a candidate's hash and its support on one rank.
struct HashCount {
  std::uint64_t hash;
  std::uint64_t support;
};

// Calls visit(hash, total support) once for each distinct hash among `count`
// HashCount records at `bytes` (any order, any alignment, supports >= 1).
// The records are first spread into 256 buckets by the top byte of the hash,
// then each bucket is summed in a small open-addressing table that stays in
// cache: a few passes over the records, where sorting them took three times
// as long (measured on 1.2 M records: sort 94 ms, this 29 ms). The hashes are
// uniform (XXH3), within an owner rank too (the owner comes from bits 32 and
// up, modulo the rank count).
template <typename Visit>
void sum_by_hash(const char* bytes, std::size_t count, Visit&& visit) {
  constexpr std::size_t kBuckets = 256;
  auto record = [bytes](std::size_t i) {
    HashCount entry;
    std::memcpy(&entry, bytes + i * sizeof(HashCount), sizeof(HashCount));
    return entry;
  };
  std::vector<std::size_t> starts(kBuckets + 1, 0);
  for (std::size_t i = 0; i < count; ++i) ++starts[(record(i).hash >> 56) + 1];
  for (std::size_t b = 1; b <= kBuckets; ++b) starts[b] += starts[b - 1];
  std::vector<HashCount> bucketed(count);
  std::vector<std::size_t> next(starts.begin(), starts.end() - 1);
  for (std::size_t i = 0; i < count; ++i) {
    HashCount entry = record(i);
    bucketed[next[entry.hash >> 56]++] = entry;
  }
  std::vector<HashCount> slots;  // support 0: empty
  for (std::size_t b = 0; b < kBuckets; ++b) {
    std::size_t capacity = 16;
    while (capacity < 2 * (starts[b + 1] - starts[b])) capacity *= 2;
    slots.assign(capacity, HashCount{0, 0});
    const std::size_t mask = capacity - 1;
    for (std::size_t i = starts[b]; i < starts[b + 1]; ++i) {
      const HashCount& entry = bucketed[i];
      std::size_t position = entry.hash & mask;
      while (slots[position].support != 0 && slots[position].hash != entry.hash) position = (position + 1) & mask;
      slots[position].hash = entry.hash;
      slots[position].support += entry.support;
    }
    for (const HashCount& slot : slots) {
      if (slot.support != 0) visit(slot.hash, slot.support);
    }
  }
}

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

// Reads again the records that `wanted` names (items with .key and .offset of
// a visited record, several items per record allowed) and calls
// visit(record, first, last) with the items of that record. Sorts `wanted` by key.
template <typename Item, typename Visit>
void read_records_again(const std::vector<std::string>& files, const corpus::ReadOptions& read,
                        std::vector<Item>& wanted, Visit&& visit) {
  auto by_key = [](const Item& a, const Item& b) { return a.key < b.key; };
  std::sort(wanted.begin(), wanted.end(), by_key);
  std::vector<corpus::LineAt> lines;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (i == 0 || wanted[i].key != wanted[i - 1].key) lines.push_back({wanted[i].key, wanted[i].offset});
  }
  corpus::read_lines_at(files, lines, read, [&](const corpus::Record& record) {
    Item probe{};
    probe.key = record.key;
    auto range = std::equal_range(wanted.begin(), wanted.end(), probe, by_key);
    visit(record, range.first, range.second);
  });
}

// Lazy exact mode: reads again the first record of each candidate that was
// seen twice or more, and checks that it holds the candidate's text (the
// table only compared hashes there). `candidates(reasoning, visit)` gives the
// sentences of a reasoning text and their hashes, as when counting.
template <typename Candidates>
bool first_occurrences_match(const CandidateTable& table, const std::vector<std::string>& files,
                             const corpus::ReadOptions& read, Candidates&& candidates) {
  struct FirstOccurrence {
    corpus::RecordKey key;   // the first record
    std::uint64_t offset;    // of its line
    std::uint32_t entry;     // the candidate's entry
  };
  std::vector<FirstOccurrence> wanted;
  for (const CandidateTable::Unverified& unverified : table.unverified()) {
    const auto& where = table.lite_record(unverified.ordinal);
    wanted.push_back({where.key, where.offset, unverified.entry});
  }
  bool match = true;
  std::vector<std::string_view> sentences;
  read_records_again(files, read, wanted, [&](const corpus::Record& record, auto first, auto last) {
    sentences.clear();
    candidates(record.reasoning, [&](std::string_view sentence, std::uint64_t) { sentences.push_back(sentence); });
    for (auto it = first; it != last; ++it) {
      match = match && std::find(sentences.begin(), sentences.end(), table.entry_text(it->entry)) != sentences.end();
    }
  });
  return match;
}

}  // namespace

std::uint64_t sentence_hash(std::string_view sentence) { return hash_text(sentence); }

const char* mining_mode_name(MiningMode mode) { return mode == MiningMode::kExact ? "exact" : "normalized"; }

MiningMode parse_mining_mode(const std::string& name) {
  if (name == "exact") return MiningMode::kExact;
  if (name == "normalized" || name == "normalised") return MiningMode::kNormalized;
  throw ConfigError(fmt::format("pattern mode must be exact or normalized, got '{}'", name));
}

MiningResult mine_patterns(const std::vector<std::string>& files, const MiningOptions& options,
                           Communicator& communicator) {
  const int world_size = communicator.size();
  MiningResult result;
  Stopwatch watch;

  const bool exact = options.mode == MiningMode::kExact;
  // 1. Local counting over this rank's share.
  CandidateTable table(/*by_words=*/!exact);
  // Exact mode keeps no text for a sentence seen once (CandidateTable's lazy
  // mode) unless every candidate qualifies anyway or the cap may prune.
  const bool lazy = exact && options.min_support >= 2 && options.max_candidates == 0;
  table.set_lazy(lazy);
  std::size_t exact_reserve = 0;
  if (exact) {
    // Sized from this rank's share of the bytes (GSM8K-like text has about one
    // distinct sentence per 190 bytes of JSON), capped at 32 MB of slots: the
    // table then skips most of its doublings, each of which re-hashed every
    // candidate into freshly zeroed memory. A smaller corpus of sentences
    // only leaves slots empty; a larger one still grows.
    std::uint64_t bytes = 0;
    for (const std::string& file : files) {
      std::error_code error;
      const auto size = std::filesystem::file_size(file, error);
      if (!error) bytes += size;
    }
    exact_reserve = static_cast<std::size_t>(std::min<std::uint64_t>(bytes / static_cast<std::uint64_t>(world_size) / 192, 1400000));
    table.reserve(exact_reserve);
  }
  // The seed's candidates of one reasoning text: visit(sentence, hash).
  auto exact_candidates = [&](std::string_view reasoning, auto&& visit_sentence) {
    split_seed_sentences(reasoning, [&](std::string_view sentence) {
      // "longer than 15 characters" in code points; bytes >= code points.
      if (sentence.size() <= 15 || (sentence.size() <= 60 && code_point_count(sentence) <= 15)) return;
      visit_sentence(sentence, hash_text(sentence) & options.test_hash_mask);
    });
  };
  NormalizedMiner normalized_miner(options);
  std::uint64_t pruned = 0;
  std::uint64_t prune_rounds = 0;
  // A record's distinct candidates are gathered first, then counted with
  // their slots prefetched together: the misses overlap instead of queueing.
  RecordCandidates record_candidates(/*by_words=*/!exact);
  RecordGroups groups(options.group_bytes);  // normalized mode
  std::string normalized_text;
  auto add_candidate = [&](std::string_view text, std::uint64_t hash, std::uint8_t kind) {
    record_candidates.add(text, hash, kind);
  };
  auto cap_table = [&]() {
    if (options.max_candidates != 0 && table.size() >= options.max_candidates) {
      // Graceful degradation: drop the rarest local candidates until a quarter is free.
      std::uint32_t threshold = 1;
      while (table.size() > options.max_candidates * 3 / 4) {
        pruned += table.prune(threshold++);
      }
      ++prune_rounds;
    }
  };
  auto visit = [&](const corpus::Record& record) {
    record_candidates.clear();
    if (exact) {
      exact_candidates(record.reasoning, [&](std::string_view sentence, std::uint64_t hash) {
        record_candidates.add(sentence, hash, kKindSentence);
      });
      if (table.lazy()) {
        table.count_record_lazy(record_candidates, record.key, record.offset);
        return;
      }
    } else {
      normalize_lines(record.reasoning, normalized_text);
      if (groups.add(normalized_text, hash_text(normalized_text), record.key)) return;  // mined after the read
      normalized_miner.mine_normalized(normalized_text, add_candidate);
    }
    table.count_record(record_candidates, record.key);
    cap_table();
  };
  // The lines are numbered after the read: the keys counted during it are
  // local to this rank and made global once it is over (globalize_keys), so
  // no rank waits for a lower one to count its lines first.
  corpus::ReadOptions read = options.read;
  read.number_lines_after = true;
  corpus::CorpusStats local_stats = corpus::read_corpus(files, read, communicator, visit);
  if (lazy) {
    // The first occurrence of each candidate seen twice or more was counted
    // by its hash alone: read those records again and compare the texts. Two
    // sentences with one 64-bit hash are not expected in practice, but exact
    // mode promises the reference's counts, so then every rank counts again
    // with all texts kept.
    bool collided = table.collision() || !first_occurrences_match(table, files, read, exact_candidates);
    if (communicator.allreduce_value<std::uint64_t>(collided ? 1 : 0, ReduceOp::kMax) != 0) {
      log::warn("exact mode: two different sentences share a 64-bit hash on some rank; counting again with every text kept");
      table.clear();
      table.set_lazy(false);
      table.reserve(exact_reserve);
      local_stats = corpus::read_corpus(files, read, communicator, visit);
      result.recounted = true;
    }
  }
  const bool lower_ranks_have_lines =
      std::any_of(local_stats.line_base.begin(), local_stats.line_base.end(), [](std::uint64_t base) { return base != 0; });
  if (lower_ranks_have_lines) {
    table.globalize_keys(local_stats);
    groups.globalize_keys(local_stats);
  }
  // Normalized mode at several ranks: the ranks often hold the same texts (the
  // same shapes of reasoning), so the groups of two records or more go to an
  // owner rank by their hash, which merges them; every text is then mined by
  // one rank instead of by each. Groups of one record stay where they are
  // (a corpus without repeats moves nothing). Mining a text on two ranks would
  // give the same counts, only twice the work: this split is for speed.
  std::vector<char> arriving;
  RecordGroups owned_groups(0);  // its texts are borrowed from `groups` and `arriving`
  const bool exchange_groups = !exact && world_size > 1;
  if (exchange_groups) {
    std::vector<std::vector<char>> outgoing(world_size);
    for (std::size_t index = 0; index < groups.size(); ++index) {
      const RecordGroups::Group& group = groups[index];
      if (group.count < 2) {
        owned_groups.merge(RecordGroups::text(group), group.hash, group.count, group.keys, group.key_count);
        continue;
      }
      WireWriter out(outgoing[static_cast<std::size_t>((group.hash >> 17) % static_cast<std::uint64_t>(world_size))]);
      RecordGroups::write_group(out, group);
    }
    exchange_buffers(communicator, outgoing, arriving);
    owned_groups.merge_written({arriving.data(), arriving.size()});
  }
  const RecordGroups& mined_groups = exchange_groups ? owned_groups : groups;
  // Normalized mode: each group of records with one normalised text, mined
  // once and counted for all of them. After the read, so the records mined
  // alone were counted in key order (count_record's examples rely on it).
  for (std::size_t index = 0; index < mined_groups.size(); ++index) {
    const RecordGroups::Group& group = mined_groups[index];
    record_candidates.clear();
    normalized_miner.mine_normalized(RecordGroups::text(group), add_candidate);
    table.count_records(record_candidates, group.count, group.keys, group.key_count);
    cap_table();
  }
  if (!exact) {
    log::debug("normalized: {} local records in {} groups of equal normalised reasoning{}; {} groups mined here",
               local_stats.records, groups.size(),
               groups.complete() ? "" : " (the rest mined one by one: the group texts filled their memory)",
               mined_groups.size());
  }
  result.local_candidates = table.size();
  result.seconds_count = watch.seconds();
  watch.reset();

  // 2. Exact reduction, in two rounds. Round 1 sends each candidate's hash and
  // support to the hash's owner rank, which sums them; the hashes whose sum
  // reaches min_support are shared with every rank. Round 2 sends the whole
  // candidates (text, kinds, examples) of those hashes only, and the owner
  // merges them by text (exact mode) or by hash (normalized mode). Most
  // candidates occur once, so round 1 moves 16 bytes for each of them instead
  // of its text. A hash collision can only add counts in round 1: it may let a
  // hash through, never hold a qualifying one back, and round 2 separates the
  // texts again, so the result stays exact.
  CandidateTable owned(/*by_words=*/!exact);
  CandidateTable* owner_table = &table;
  std::uint64_t owner_distinct = table.size();
  std::uint64_t owner_qualified = 0;  // round 1: owned hashes with support >= min_support
  std::vector<char> received;
  if (world_size > 1) {
    auto owner_of_hash = [&](std::uint64_t hash) { return static_cast<int>((hash >> 32) % static_cast<std::uint64_t>(world_size)); };
    // Round 1.
    std::vector<std::size_t> send_counts(world_size, 0);
    table.for_each_slot([&](std::uint64_t hash, std::uint32_t) { send_counts[owner_of_hash(hash)] += sizeof(HashCount); });
    std::vector<std::size_t> offsets(world_size, 0);
    for (int r = 1; r < world_size; ++r) offsets[r] = offsets[r - 1] + send_counts[r - 1];
    std::vector<HashCount> send((offsets.back() + send_counts.back()) / sizeof(HashCount));
    table.for_each_slot([&](std::uint64_t hash, std::uint32_t support) {
      int owner = owner_of_hash(hash);
      send[offsets[owner] / sizeof(HashCount)] = {hash, support};
      offsets[owner] += sizeof(HashCount);
    });
    exchange_bytes(communicator, reinterpret_cast<const char*>(send.data()), send_counts, received);
    send = {};
    log::debug("reduction: round 1 exchanged at {:.3f} s", watch.seconds());
    std::vector<HashCount> qualifying;  // (hash, global support)
    owner_distinct = 0;
    sum_by_hash(received.data(), received.size() / sizeof(HashCount), [&](std::uint64_t hash, std::uint64_t support) {
      ++owner_distinct;
      if (support >= options.min_support) qualifying.push_back({hash, support});
    });
    received = {};
    log::debug("reduction: round 1 summed at {:.3f} s", watch.seconds());
    owner_qualified = qualifying.size();
    // Normalized mode identifies a candidate by its hash, so round 1's sums are
    // its global supports, and only the pool (the pool_size best, in pattern
    // order) goes on: round 2 needs the candidates whose support reaches the
    // pool_size-th best support (ties included, to be ordered by text). On a
    // corpus where most candidates recur, this sends thousands of texts instead
    // of every candidate. (Exact mode keeps every qualifying hash: there a
    // collision sums two texts' supports, which could push a text out of a cut.)
    if (!exact && options.pool_size != 0) {
      std::vector<std::uint64_t> best;
      for (const HashCount& entry : qualifying) best.push_back(entry.support);
      if (best.size() > options.pool_size) {
        std::nth_element(best.begin(), best.begin() + (options.pool_size - 1), best.end(), std::greater<>());
        best.resize(options.pool_size);
      }
      std::vector<std::uint64_t> all_best = communicator.allgatherv(best);
      if (all_best.size() >= options.pool_size) {
        std::nth_element(all_best.begin(), all_best.begin() + (options.pool_size - 1), all_best.end(), std::greater<>());
        const std::uint64_t threshold = all_best[options.pool_size - 1];
        qualifying.erase(std::remove_if(qualifying.begin(), qualifying.end(),
                                        [&](const HashCount& entry) { return entry.support < threshold; }),
                         qualifying.end());
      }
    }
    std::vector<std::uint64_t> qualifying_hashes;
    for (const HashCount& entry : qualifying) qualifying_hashes.push_back(entry.hash);
    qualifying = {};
    std::vector<std::uint64_t> all_qualifying = communicator.allgatherv(qualifying_hashes);
    log::debug("reduction: round 1 done, {} hashes qualify, at {:.3f} s", all_qualifying.size(), watch.seconds());

    // Round 2: the local candidates of the qualifying hashes, to their owners.
    std::vector<std::vector<char>> outgoing(world_size);
    auto send_candidate = [&](const Candidate& candidate) {
      WireWriter out(outgoing[owner_of_hash(candidate.hash)]);
      write_candidate(out, candidate);
    };
    struct LiteWanted {
      corpus::RecordKey key;  // the record that holds the candidate
      std::uint64_t offset;   // of the record's line
      std::uint64_t hash;
      bool sent;
    };
    std::vector<LiteWanted> lite_wanted;
    for (std::uint64_t hash : all_qualifying) {
      table.for_each_of_hash(hash, send_candidate);
      table.for_each_lite_of_hash(hash, [&](std::uint32_t ordinal) {
        const auto& where = table.lite_record(ordinal);
        lite_wanted.push_back({where.key, where.offset, hash, false});
      });
    }
    if (!lite_wanted.empty()) {
      // Candidates seen once on this rank have no text here: read their records again.
      std::size_t found = 0;
      read_records_again(files, read, lite_wanted, [&](const corpus::Record& record, auto first, auto last) {
        exact_candidates(record.reasoning, [&](std::string_view sentence, std::uint64_t hash) {
          for (auto it = first; it != last; ++it) {
            if (it->sent || it->hash != hash) continue;
            it->sent = true;  // a repeat of the sentence in this record is not counted again
            Candidate candidate;
            candidate.hash = hash;
            candidate.text = sentence.data();
            candidate.length = static_cast<std::uint32_t>(sentence.size());
            candidate.support = 1;
            candidate.kinds = kKindSentence;
            candidate.example_count = 1;
            candidate.examples[0] = record.key;
            send_candidate(candidate);
            ++found;
            break;
          }
        });
      });
      if (found != lite_wanted.size()) {
        throw InputError("exact mode: a record read again no longer holds the sentence it held (a corpus file changed while it was read)");
      }
    }
    exchange_buffers(communicator, outgoing, received);
    std::size_t arriving = 0;
    read_candidates({received.data(), received.size()}, [&](const Candidate&) { ++arriving; });
    owned.reserve(arriving);  // an upper bound: the same text may come from several ranks
    read_candidates({received.data(), received.size()}, [&](const Candidate& candidate) {
      owned.merge(candidate.view(), candidate.support, candidate.kinds, candidate.examples, candidate.example_count);
    });
    owner_table = &owned;
    log::debug("reduction: merged {} candidates at {:.2f} s", owned.size(), watch.seconds());
  }

  // 3. Select at the owner: enough support (and, normalized, enough words),
  // in pattern order, at most the pool size.
  std::vector<Candidate> qualified;
  // (normalized candidates have at least min_words words by construction)
  const auto min_support = static_cast<std::uint32_t>(std::min<std::uint64_t>(options.min_support, UINT32_MAX));
  owner_table->for_each([&](const Candidate& candidate) { qualified.push_back(candidate); }, min_support);
  // (normalized mode at several ranks: counted in round 1, before the cut to the pool)
  std::uint64_t local_qualified = !exact && world_size > 1 ? owner_qualified : qualified.size();
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
  std::vector<char> selection;
  WireWriter out(selection);
  for (const Candidate& candidate : qualified) write_candidate(out, candidate);
  std::vector<char> gathered = communicator.allgatherv(selection);
  std::vector<Candidate> pool;
  read_candidates({gathered.data(), gathered.size()}, [&](const Candidate& candidate) { pool.push_back(candidate); });
  cut_to_pool(pool);
  log::debug("reduction: pool of {} at {:.2f} s", pool.size(), watch.seconds());

  std::vector<const Candidate*> chosen;
  if (exact) {
    for (const Candidate& candidate : pool) chosen.push_back(&candidate);
  } else {
    std::vector<std::size_t> picks = options.selection == Selection::kCoverage
                                         ? choose_by_coverage(files, options, pool, groups, mined_groups, communicator)
                                         : choose_by_support(pool, options);
    for (std::size_t i : picks) chosen.push_back(&pool[i]);
  }

  // 5. Counts over the job.
  std::vector<std::uint64_t> counts = {owner_distinct, local_qualified, pruned, prune_rounds};
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
