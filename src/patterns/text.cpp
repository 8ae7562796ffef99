#include "metareuse/patterns/text.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

namespace metareuse {
namespace {

bool is_ascii_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Function words that alone do not make a reasoning move. Hand-written: no
// Debian package ships an English stop-word list as a C++ library.
constexpr std::string_view kStopWords[] = {
    "a",   "an",   "the",  "and",  "or",    "but",   "so",    "then", "of",   "to",    "in",   "on",  "at",
    "by",  "for",  "with", "from", "as",    "is",    "are",   "was",  "were", "be",    "been", "it",  "its",
    "this", "that", "these", "those", "he", "she",   "they",  "we",   "i",    "you",   "his",  "her", "their",
    "our", "my",   "your", "him",  "them",  "us",    "me",    "into", "x",    "she's", "he's", "it's", "that's",
    "am"};

}  // namespace

std::size_t code_point_count(std::string_view text) {
  std::size_t count = 0;
  for (char c : text) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

namespace {

// Bytes copied as they are (lowered): not '<' (a calculator annotation may
// start), not a digit, not white space. Runs of them take the fast loop.
const std::array<std::uint8_t, 256> kPlainLowered = [] {
  std::array<std::uint8_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    auto byte = static_cast<char>(c);
    bool plain = byte != '<' && !is_digit(byte) && !is_seed_space(byte);
    table[c] = !plain ? 0 : (byte >= 'A' && byte <= 'Z') ? static_cast<std::uint8_t>(c - 'A' + 'a') : static_cast<std::uint8_t>(c);
  }
  return table;
}();

}  // namespace

void normalize_lines(std::string_view text, std::string& out, char line_break) {
  // Writes into a buffer sized for the worst case ("<num>" is 5 bytes for a
  // 1-byte number), then trims: this runs over every byte of the corpus.
  out.resize(text.size() * 5 + 1);
  char* write = out.data();
  char* const begin = write;
  char pending = 0;  // ' ' or '\n' owed before the next character
  const std::size_t n = text.size();
  std::size_t i = 0;
  auto separate = [&]() {
    if (pending != 0 && write != begin && write[-1] != '\n') *write++ = pending;
    pending = 0;
  };
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  while (i < n) {
    if (kPlainLowered[bytes[i]] != 0) {  // (NUL is not plain: it takes the general path)
      separate();
      do {
        *write++ = static_cast<char>(kPlainLowered[bytes[i]]);
        ++i;
      } while (i < n && kPlainLowered[bytes[i]] != 0);
      continue;
    }
    char c = text[i];
    if (c == '<' && i + 1 < n && text[i + 1] == '<') {
      std::size_t close = text.find(">>", i + 2);
      if (close != std::string_view::npos) {
        i = close + 2;  // a calculator annotation: removed
        continue;
      }
    }
    if (is_digit(c)) {
      std::size_t j = i + 1;
      while (j < n) {
        if (is_digit(text[j])) ++j;
        else if ((text[j] == ',' || text[j] == '.') && j + 1 < n && is_digit(text[j + 1])) j += 2;
        else break;
      }
      separate();
      std::memcpy(write, "<num>", 5);
      write += 5;
      i = j;
      continue;
    }
    if (is_seed_space(c)) {
      if (c == '\n') pending = line_break;
      else if (pending == 0) pending = ' ';
      ++i;
      continue;
    }
    separate();
    *write++ = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    ++i;
  }
  out.resize(static_cast<std::size_t>(write - begin));
}

std::string normalize(std::string_view text) {
  std::string out;
  normalize_lines(text, out, ' ');
  return out;
}

bool contains_word_aligned(std::string_view normalized_text, std::string_view pattern) {
  if (pattern.empty()) return false;
  const bool check_before = is_ascii_alnum(pattern.front());
  const bool check_after = is_ascii_alnum(pattern.back());
  std::size_t position = normalized_text.find(pattern);
  while (position != std::string_view::npos) {
    std::size_t end = position + pattern.size();
    bool before_ok = !check_before || position == 0 || !is_ascii_alnum(normalized_text[position - 1]);
    bool after_ok = !check_after || end == normalized_text.size() || !is_ascii_alnum(normalized_text[end]);
    if (before_ok && after_ok) return true;
    position = normalized_text.find(pattern, position + 1);
  }
  return false;
}

std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find_first_of(" \n", start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) words.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

bool is_alphabetic_word(std::string_view word) {
  // Letters of "<num>" do not count.
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (word.compare(i, 5, "<num>") == 0) {
      i += 4;
      continue;
    }
    char c = word[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  }
  return false;
}

bool is_content_word(std::string_view word) {
  auto trailing = [](char c) {
    return c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?' || c == '"' || c == '\'' || c == '(' || c == ')';
  };
  while (!word.empty() && trailing(word.back())) word.remove_suffix(1);
  while (!word.empty() && (word.front() == '"' || word.front() == '\'' || word.front() == '(')) word.remove_prefix(1);
  if (!is_alphabetic_word(word)) return false;
  if (word.size() > 6) return true;  // no stop word is longer
  // Stop words bucketed by first letter: this runs for every word of the corpus.
  static const auto buckets = [] {
    std::array<std::vector<std::string_view>, 256> table;
    for (std::string_view stop : kStopWords) table[static_cast<unsigned char>(stop[0])].push_back(stop);
    return table;
  }();
  const auto& bucket = buckets[static_cast<unsigned char>(word[0])];
  return std::find(bucket.begin(), bucket.end(), word) == bucket.end();
}

std::string behavior_name(std::string_view text) {
  std::string lowered(text);
  for (char& c : lowered) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  std::string name = "behavior";
  int taken = 0;
  for (std::string_view word : split_words(lowered)) {
    if (!is_content_word(word)) continue;
    std::string letters;
    for (char c : word) {
      if (c >= 'a' && c <= 'z') letters.push_back(c);
    }
    if (letters.empty()) continue;
    name += "_" + letters;
    if (++taken == 4) break;
  }
  return taken == 0 ? "behavior_pattern" : name;
}

std::string behavior_instruction(std::string_view sentence) {
  std::string instruction = normalize(sentence);
  if (!instruction.empty() && instruction[0] >= 'a' && instruction[0] <= 'z') {
    instruction[0] = static_cast<char>(instruction[0] - 'a' + 'A');
  }
  return instruction;
}

namespace {

// Verb forms that make a sentence of a worked solution: auxiliaries, the
// verbs its steps use, and the imperatives an instruction uses. Lowercase,
// base forms and their -s forms (is_verb_like strips "s", "es" and "ies").
constexpr std::string_view kVerbs[] = {
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "do", "does", "did",
    "will", "would", "can", "could", "should", "shall", "may", "might", "must", "get", "got", "make", "made",
    "take", "took", "buy", "bought", "sell", "sold", "spend", "spent", "pay", "paid", "give", "gave", "cost",
    "need", "earn", "save", "eat", "ate", "run", "ran", "read", "left", "leave", "keep", "kept", "put", "find",
    "found", "know", "knew", "go", "went", "come", "came", "work", "use", "add", "subtract", "multiply",
    "divide", "compute", "calculate", "count", "convert", "check", "compare", "set", "write", "solve", "let",
    "sum", "mean", "means", "equal", "remain", "receive", "sit", "hold", "contain", "weigh", "drive", "walk",
    "travel", "grow", "charge", "start", "want", "plant", "collect", "share", "split", "represent"};

bool is_verb_like(std::string_view word) {
  std::string letters;
  for (char c : word) {
    if (c >= 'A' && c <= 'Z') letters.push_back(static_cast<char>(c - 'A' + 'a'));
    else if ((c >= 'a' && c <= 'z') || c == '\'') letters.push_back(c);
  }
  auto listed = [](std::string_view form) {
    return std::find(std::begin(kVerbs), std::end(kVerbs), form) != std::end(kVerbs);
  };
  std::string_view form = letters;
  if (listed(form)) return true;
  if (form.size() > 3 && form.substr(form.size() - 2) == "ed") return true;
  if (form.size() > 3 && form.substr(form.size() - 3) == "ies" && listed(std::string(form.substr(0, form.size() - 3)) + "y")) {
    return true;
  }
  if (form.size() > 2 && form.substr(form.size() - 2) == "es" && listed(form.substr(0, form.size() - 2))) return true;
  return form.size() > 1 && form.back() == 's' && listed(form.substr(0, form.size() - 1));
}

}  // namespace

bool is_full_sentence(std::string_view instruction) {
  const std::vector<std::string_view> words = split_words(instruction);
  std::size_t lettered = 0;
  bool verb = false;
  for (std::string_view word : words) {
    if (!is_alphabetic_word(word)) continue;
    ++lettered;
    verb = verb || is_verb_like(word);
  }
  if (lettered < 5 || !verb) return false;
  std::string_view start = instruction;
  if (!start.empty() && start.front() == '$') start.remove_prefix(1);
  const bool capital_or_slot = !start.empty() && ((start.front() >= 'A' && start.front() <= 'Z') ||
                                                  start.compare(0, 5, "<num>") == 0);
  std::string_view end = instruction;
  while (!end.empty() && (end.back() == '"' || end.back() == '\'' || end.back() == ')')) end.remove_suffix(1);
  const bool punctuated = !end.empty() && (end.back() == '.' || end.back() == '!' || end.back() == '?');
  return capital_or_slot && punctuated;
}

}  // namespace metareuse
