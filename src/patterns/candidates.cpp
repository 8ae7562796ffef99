#include "candidates.h"

#include <cstring>

namespace metareuse::patterns_detail {
namespace {

bool is_abbreviation(std::string_view word) {
  static const char* const kAbbreviations[] = {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.",
                                               "etc.", "e.g.", "i.e.", "approx.", "prof.", "mt.", "ft.", "lb.", "oz."};
  for (const char* abbreviation : kAbbreviations) {
    if (word == abbreviation) return true;
  }
  return false;
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

WordFacts work_out(std::string_view word, std::uint64_t hash) {
  WordFacts facts;
  facts.hash = hash;
  std::string_view trimmed = trim_trailing_punctuation(word);
  facts.trimmed_length = static_cast<std::uint32_t>(trimmed.size());
  facts.trimmed_hash = trimmed.size() == word.size() ? hash : hash_word(trimmed);
  facts.lead = static_cast<std::uint32_t>(leading_punctuation(word));
  facts.lead_hash = facts.lead == 0 ? hash : hash_word(word.substr(facts.lead));
  facts.content = is_content_word(word) ? 1 : 0;
  facts.flags = static_cast<std::uint8_t>((ends_sentence(word) ? WordFacts::kEndsSentence : 0) |
                                          (ends_clause(word) ? WordFacts::kEndsClause : 0) |
                                          (is_operator(word) ? WordFacts::kOperator : 0));
  return facts;
}

constexpr std::uint32_t kMinContentWords = 1;

}  // namespace

bool ends_sentence(std::string_view word) {
  char last = word.back();
  return (last == '.' || last == '!' || last == '?') && !is_abbreviation(word);
}

void write_candidate(WireWriter& out, const Candidate& candidate) {
  out.put<std::uint32_t>(candidate.length);
  out.put<std::uint32_t>(candidate.support);
  out.put<std::uint8_t>(candidate.kinds);
  out.put<std::uint8_t>(candidate.example_count);
  out.put_array<RecordKey>(candidate.examples, candidate.example_count);
  out.put_bytes(candidate.text, candidate.length);
}

// A word not in the cache is worked out and cached while there is room.
WordFacts WordCache::facts(std::string_view word) {
  const std::uint64_t hash = hash_word(word);
  if (slots_.empty()) slots_.resize(std::size_t{1} << 12);
  const std::size_t mask = slots_.size() - 1;
  std::size_t position = hash & mask;
  for (; slots_[position].length != kNoWord; position = (position + 1) & mask) {
    const CachedWord& cached = slots_[position];
    if (cached.facts.hash == hash && cached.length == word.size() &&
        std::memcmp(text_.data() + cached.offset, word.data(), word.size()) == 0) {
      return cached.facts;
    }
  }
  WordFacts facts = work_out(word, hash);
  if (words_ < kMaxWords && word.size() < kNoWord && text_.size() + word.size() < kNoWord) {
    slots_[position] = {facts, static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(word.size())};
    text_.append(word);
    if (++words_ * 2 > slots_.size()) grow();  // keep it at most half full
  }
  return facts;
}

void WordCache::grow() {
  std::vector<CachedWord> old = std::move(slots_);
  slots_.assign(old.size() * 2, CachedWord{});
  const std::size_t mask = slots_.size() - 1;
  for (const CachedWord& cached : old) {
    if (cached.length == kNoWord) continue;
    std::size_t at = cached.facts.hash & mask;
    while (slots_[at].length != kNoWord) at = (at + 1) & mask;
    slots_[at] = cached;
  }
}

void NormalizedMiner::mine(std::string_view all, RecordCandidates& out) {
  std::size_t line_start = 0;
  while (line_start < all.size()) {
    std::size_t line_end = all.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = all.size();
    mine_line(all.substr(line_start, line_end - line_start), out);
    line_start = line_end + 1;
  }
}

void NormalizedMiner::mine_line(std::string_view line, RecordCandidates& out) {
  words_.clear();
  std::size_t start = 0;
  while (start < line.size()) {
    std::size_t end = line.find(' ', start);
    if (end == std::string_view::npos) end = line.size();
    words_.push_back(line.substr(start, end - start));
    start = end + 1;
  }
  content_prefix_.assign(words_.size() + 1, 0);
  facts_.resize(words_.size());
  for (std::size_t i = 0; i < words_.size(); ++i) {
    facts_[i] = cache_.facts(words_[i]);
    content_prefix_[i + 1] = content_prefix_[i] + facts_[i].content;
  }
  std::size_t sentence_begin = 0;
  for (std::size_t i = 0; i < words_.size(); ++i) {
    if (i + 1 == words_.size() || (facts_[i].flags & WordFacts::kEndsSentence) != 0) {
      mine_sentence(sentence_begin, i + 1, out);
      sentence_begin = i + 1;
    }
  }
}

std::string_view NormalizedMiner::span(std::size_t begin, std::size_t end, bool trim_last, std::size_t lead) const {
  std::string_view last = words_[end - 1];
  if (trim_last) last = last.substr(0, facts_[end - 1].trimmed_length);
  const char* first = words_[begin].data() + lead;
  return {first, static_cast<std::size_t>(last.data() + last.size() - first)};
}

bool NormalizedMiner::enough_content(std::size_t begin, std::size_t end) const {
  return content_prefix_[end] - content_prefix_[begin] >= kMinContentWords;
}

// The sentence words_[begin, end) and the phrases of each of its clauses.
void NormalizedMiner::mine_sentence(std::size_t begin, std::size_t end, RecordCandidates& out) {
  if (end - begin >= options_.min_words && enough_content(begin, end)) {
    std::uint64_t chain = kChainSeed;
    for (std::size_t i = begin; i < end; ++i) chain = hash_chain(chain, facts_[i].hash);
    out.add(span(begin, end, false), chain, kKindSentence);
  }
  std::size_t clause_begin = begin;
  for (std::size_t i = begin; i < end; ++i) {
    if (i + 1 != end && (facts_[i].flags & WordFacts::kEndsClause) == 0) continue;
    mine_clause(clause_begin, i + 1, out);
    clause_begin = i + 1;
  }
}

// The phrases of the clause words_[begin, end): min_words to max_phrase_words
// words from each first word, and their forms without its leading punctuation.
void NormalizedMiner::mine_clause(std::size_t begin, std::size_t end, RecordCandidates& out) {
  const std::size_t min_words = options_.min_words;
  for (std::size_t first = begin; first + min_words <= end; ++first) {
    if (!enough_content(first, std::min(first + options_.max_phrase_words, end))) continue;
    std::size_t longest = std::min(options_.max_phrase_words, end - first);
    for (bool stripped : {false, true}) {
      if (stripped && (facts_[first].lead == 0 || longest < 2)) break;
      // (the stripped form starts with the second word's hash, so one-word phrases are left out)
      std::uint64_t chain = stripped ? hash_chain(kChainSeed, facts_[first].lead_hash) : kChainSeed;
      for (std::size_t count = stripped ? 2 : 1; count <= longest; ++count) {
        std::size_t last = first + count - 1;
        bool at_clause_end = last + 1 == end;
        std::uint64_t hash = hash_chain(chain, at_clause_end ? facts_[last].trimmed_hash : facts_[last].hash);
        chain = hash_chain(chain, facts_[last].hash);
        if (count < min_words || !enough_content(first, first + count) ||
            (facts_[last].flags & WordFacts::kOperator) != 0) {
          continue;
        }
        out.add(span(first, first + count, at_clause_end, stripped ? facts_[first].lead : 0), hash, kKindPhrase);
      }
    }
  }
}

bool first_occurrences_match(const CandidateTable& table, const std::vector<std::string>& files,
                             const ReadOptions& read, const ExactSentences& sentences) {
  struct FirstOccurrence {
    RecordKey key;   // the first record
    std::uint64_t offset;    // of its line
    std::uint32_t entry;     // the candidate's entry
  };
  std::vector<FirstOccurrence> wanted;
  for (const CandidateTable::Unverified& unverified : table.unverified()) {
    const auto& where = table.lite_record(unverified.ordinal);
    wanted.push_back({where.key, where.offset, unverified.entry});
  }
  bool match = true;
  std::vector<std::string_view> found;
  read_records_again(files, read, wanted, [&](const Record& record, auto first, auto last) {
    found.clear();
    sentences(record.reasoning, [&](std::string_view sentence, std::uint64_t) { found.push_back(sentence); });
    for (auto it = first; it != last; ++it) {
      match = match && std::find(found.begin(), found.end(), table.entry_text(it->entry)) != found.end();
    }
  });
  return match;
}

}  // namespace metareuse::patterns_detail
