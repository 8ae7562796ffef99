// The candidates of one record: exact mode's seed sentences, normalized mode's
// sentences and phrases (NormalizedMiner, with a cache of what it knows of each
// word); how a candidate travels between ranks; the pattern order; and the
// reading again of records whose candidates were kept without their text.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "candidate_table.h"  // Candidate, CandidateTable, RecordCandidates, hash_text
#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/miner.h"
#include "metareuse/patterns/text.h"  // split_seed_sentences, code_point_count
#include "wire.h"

namespace metareuse::patterns_detail {

// The pattern order: support descending, then the text's UTF-8 bytes.
inline bool pattern_before(const Candidate& a, const Candidate& b) {
  if (a.support != b.support) return a.support > b.support;
  return a.view() < b.view();
}

// A candidate on the wire: u32 length, u32 support, u8 kinds, u8 example
// count, the example keys, then the text (not the hash: the receiver hashes
// the text again where it needs one).
void write_candidate(WireWriter& out, const Candidate& candidate);

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
    in.get_array<RecordKey>(candidate.examples, candidate.example_count);
    candidate.text = in.get_bytes(candidate.length).data();
    visit(candidate);
  }
}

// Exact mode: the seed's candidates of one reasoning text, visit(sentence,
// hash) for each sentence longer than 15 characters.
struct ExactSentences {
  std::uint64_t hash_mask = ~std::uint64_t{0};  // MiningOptions::test_hash_mask

  template <typename Visit>
  void operator()(std::string_view reasoning, Visit&& visit) const {
    split_seed_sentences(reasoning, [&](std::string_view sentence) {
      // "longer than 15 characters" in code points; bytes >= code points.
      if (sentence.size() <= 15 || (sentence.size() <= 60 && code_point_count(sentence) <= 15)) return;
      visit(sentence, hash_text(sentence) & hash_mask);
    });
  }
};

// Normalized mode's sentence end: a word ending in '.', '!' or '?' that is
// not an abbreviation ("mr.", "e.g."). Non-empty words only.
bool ends_sentence(std::string_view word);

// The sentences of a text normalize_lines() wrote (lines cut at '\n', words
// at single spaces), cut where NormalizedMiner cuts them: at each line end
// and after each word that ends_sentence(). Calls visit(std::string_view).
template <typename Visit>
void split_normalized_sentences(std::string_view text, Visit&& visit) {
  std::size_t sentence_begin = 0;
  std::size_t word_begin = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const bool line_end = i == text.size() || text[i] == '\n';
    if (!line_end && text[i] != ' ') continue;
    if (i > word_begin && (line_end || ends_sentence(text.substr(word_begin, i - word_begin)))) {
      visit(text.substr(sentence_begin, i - sentence_begin));
      sentence_begin = i + 1;
    } else if (line_end) {
      sentence_begin = i + 1;
    }
    word_begin = i + 1;
  }
}

// What the normalized miner needs to know of a word, worked out once per
// distinct word: the corpus repeats a small vocabulary, and these tests ran
// for every word.
struct WordFacts {
  static constexpr std::uint8_t kEndsSentence = 1;
  static constexpr std::uint8_t kEndsClause = 2;
  static constexpr std::uint8_t kOperator = 4;

  std::uint64_t hash = 0;          // hash_word() of the word
  std::uint64_t trimmed_hash = 0;  // ... without trailing punctuation (a phrase's last word)
  std::uint64_t lead_hash = 0;     // ... without leading punctuation (a stripped phrase's first word)
  std::uint32_t trimmed_length = 0;
  std::uint32_t lead = 0;  // bytes of leading punctuation
  std::uint8_t content = 0;  // is_content_word()
  std::uint8_t flags = 0;  // kEndsSentence, kEndsClause, kOperator
};

// The facts of the words seen before: open addressing on the word's hash, the
// facts in the slot, the texts compared; up to kMaxWords words.
class WordCache {
 public:
  WordFacts facts(std::string_view word);

 private:
  static constexpr std::size_t kMaxWords = std::size_t{1} << 20;
  static constexpr std::uint32_t kNoWord = ~std::uint32_t{0};
  struct CachedWord {
    WordFacts facts;
    std::uint32_t offset = 0;  // into text_
    std::uint32_t length = kNoWord;  // kNoWord: an empty slot
  };

  void grow();

  std::vector<CachedWord> slots_;
  std::size_t words_ = 0;
  std::string text_;
};

// Normalized mode's candidates of one record: its sentences and the word
// n-grams of each clause, each with a content word (a word with a letter that
// is not a stop word), so that runs of numbers, operators and function words
// ("<num> x <num> =", "so he has <num>") are filtered out as filler.
// A phrase whose first word starts with punctuation ("$<num> = $<num> left")
// also counts without it ("<num> = $<num> left"): a word-aligned match of the
// shorter text is found wherever the longer one is, and after "<num>" too.
class NormalizedMiner {
 public:
  explicit NormalizedMiner(const MiningOptions& options) : options_(options) {}

  // Adds to `out` the candidates (text, hash_words(text), kind) of a record's
  // reasoning, already normalised by normalize_lines() (lines cut at '\n'),
  // repeats included; `all` must outlive the use of the texts it is given.
  void mine(std::string_view all, RecordCandidates& out);

 private:
  void mine_line(std::string_view line, RecordCandidates& out);
  void mine_sentence(std::size_t begin, std::size_t end, RecordCandidates& out);
  void mine_clause(std::size_t begin, std::size_t end, RecordCandidates& out);
  std::string_view span(std::size_t begin, std::size_t end, bool trim_last, std::size_t lead = 0) const;
  bool enough_content(std::size_t begin, std::size_t end) const;

  const MiningOptions& options_;
  std::vector<std::string_view> words_;
  std::vector<std::uint32_t> content_prefix_;  // content words among words_[0, i)
  std::vector<WordFacts> facts_;  // of words_[i]
  WordCache cache_;
};

// Reads again the records that `wanted` names (items with .key and .offset of
// a visited record, several items per record allowed) and calls
// visit(record, first, last) with the items of that record. Sorts `wanted` by key.
template <typename Item, typename Visit>
void read_records_again(const std::vector<std::string>& files, const ReadOptions& read,
                        std::vector<Item>& wanted, Visit&& visit) {
  auto by_key = [](const Item& a, const Item& b) { return a.key < b.key; };
  std::sort(wanted.begin(), wanted.end(), by_key);
  std::vector<LineAt> lines;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (i == 0 || wanted[i].key != wanted[i - 1].key) lines.push_back({wanted[i].key, wanted[i].offset});
  }
  read_lines_at(files, lines, read, [&](const Record& record) {
    Item probe{};
    probe.key = record.key;
    auto range = std::equal_range(wanted.begin(), wanted.end(), probe, by_key);
    visit(record, range.first, range.second);
  });
}

// Lazy exact mode: reads again the first record of each candidate that was
// seen twice or more, and checks that it holds the candidate's text (the
// table only compared hashes there). `sentences` are the ones counted.
bool first_occurrences_match(const CandidateTable& table, const std::vector<std::string>& files,
                             const ReadOptions& read, const ExactSentences& sentences);

}  // namespace metareuse::patterns_detail
