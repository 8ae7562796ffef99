// Text rules of pattern mining: the seed's sentence split (exact mode) and the
// normalised form (normalized mode), in which pattern texts are stored.
//
// Normalised form, so that anyone can check a pattern against any text:
//   1. lowercase (ASCII letters; other characters are kept as they are);
//   2. remove calculator annotations <<...>>;
//   3. replace every number (digits, with ',' or '.' between digits) by <num>;
//   4. collapse white space to single spaces, none at either end.
// A pattern occurs in a text when it is a word-aligned substring of the
// normalised text: the characters either side are not ASCII letters or digits.
#pragma once

#if defined(__SSE2__)
#include <emmintrin.h>  // _mm_cmpeq_epi8, _mm_movemask_epi8
#endif

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace metareuse {

// ASCII white space as Python's str.strip(" \t\n\r\f\v") sees it.
inline bool is_seed_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Number of Unicode code points in valid UTF-8 (Python's len()).
std::size_t code_point_count(std::string_view text);

// The seed's sentences of `reasoning`: cut at every newline and after every
// '.', '!' or '?' followed by white space, each stripped of ASCII white space.
// Calls `visit(std::string_view)` for each sentence, empty ones included.
// (A template: it runs once per sentence of the corpus.)
//
// Python's re.split(r"\n|(?<=[.!?])[ \t\n\r\f\v]+") then strip(): every cut
// falls on white space, so cutting at each newline and at the first white
// space after '.', '!' or '?' gives the same stripped sentences.
//
// Only '\n', '.', '!' and '?' can cut, so the scan looks for those four bytes
// 16 at a time (SSE2, in every x86-64) and handles each one found in order.
template <typename Visit>
void split_seed_sentences(std::string_view reasoning, Visit&& visit) {
  auto emit = [&](std::size_t begin, std::size_t end) {
    while (begin < end && is_seed_space(reasoning[begin])) ++begin;
    while (end > begin && is_seed_space(reasoning[end - 1])) --end;
    visit(reasoning.substr(begin, end - begin));
  };
  const char* data = reasoning.data();
  const std::size_t size = reasoning.size();
  std::size_t start = 0;
  auto at_mark = [&](std::size_t i) {
    if (data[i] == '\n') {
      emit(start, i);
      start = i + 1;
    } else if (i + 1 < size && is_seed_space(data[i + 1])) {
      emit(start, i + 1);
      start = i + 1;  // the white space after it is stripped from the next sentence
    }
  };
  std::size_t i = 0;
#if defined(__SSE2__)
  const __m128i newline = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  const __m128i bang = _mm_set1_epi8('!');
  const __m128i question = _mm_set1_epi8('?');
  for (; i + 16 <= size; i += 16) {
    __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
    __m128i marks = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(block, newline), _mm_cmpeq_epi8(block, dot)),
                                 _mm_or_si128(_mm_cmpeq_epi8(block, bang), _mm_cmpeq_epi8(block, question)));
    for (unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(marks)); mask != 0; mask &= mask - 1) {
      at_mark(i + static_cast<std::size_t>(__builtin_ctz(mask)));
    }
  }
#endif
  for (; i < size; ++i) {
    char c = data[i];
    if (c == '\n' || c == '.' || c == '!' || c == '?') at_mark(i);
  }
  emit(start, size);
}

// The normalised form of `text` (see above).
std::string normalize(std::string_view text);

// Like normalize() but keeps line breaks as `line_break` (no empty lines), for
// sentence splitting; with line_break ' ' it writes normalize()'s text.
void normalize_lines(std::string_view text, std::string& out, char line_break = '\n');

// True when `pattern` occurs in `normalized_text` word-aligned.
bool contains_word_aligned(std::string_view normalized_text, std::string_view pattern);

// Words of a normalised text (split at spaces).
std::vector<std::string_view> split_words(std::string_view text);

// A word with a letter outside "<num>".
bool is_alphabetic_word(std::string_view word);

// A word that carries meaning: has a letter, is not "<num>", not a stop word.
bool is_content_word(std::string_view word);

// "behavior_find_total_number": up to four content words of the text.
std::string behavior_name(std::string_view text);

// A sentence as a handbook instruction: its normalised form (numbers as
// <num> slots), first letter capitalised: "A total of <num> + <num> = <num> apples."
std::string behavior_instruction(std::string_view sentence);

// Whether a handbook instruction reads as a full sentence rather than a
// fragment ("A total of <num>"). All four, deliberately simple:
//   1. at least 5 words with a letter ("<num>", "=" and "+" do not count);
//   2. it starts with a capital letter or a number slot ("<num>", "$<num>");
//   3. it ends with '.', '!' or '?' (a closing quote or bracket may follow);
//   4. a word is verb-like: in a closed list of auxiliaries and the verbs of
//      worked solutions ("is", "has", "costs", "multiply", ...), or ends in "ed".
// The miner prefers such sentences as instructions, and the tests measure
// the handbook with this same function.
bool is_full_sentence(std::string_view instruction);

}  // namespace metareuse
