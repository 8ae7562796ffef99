// Finds which pool patterns occur in a normalised text under the rule that
// --holdout and the quality target use: a word-aligned substring, so a
// pattern may start or end inside a text word ("<num> = <num> hours" occurs in
// "$<num> = <num> hours."). One pass per text with an Aho-Corasick automaton
// over the pool (hand-written: Debian has no C++ multi-pattern matcher),
// whose transitions are a dense table over the bytes the pool uses; every
// other byte is symbol 0 and leads back to the root.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "candidate_table.h"  // Candidate, LargeAllocator

namespace metareuse::patterns_detail {

class PoolMatcher {
 public:
  explicit PoolMatcher(const std::vector<Candidate>& pool);

  // Appends the indices of the pool patterns in `text` to `found` (repeats included).
  void match(std::string_view text, std::vector<std::uint32_t>& found) const { match_many(&text, &found, 1); }

  // match() for texts[0, count) at once, count <= kLanes, a byte of each in
  // turn: the table does not fit the caches, and the walks of different texts
  // do not wait for each other's misses.
  static constexpr std::size_t kLanes = 8;
  void match_many(const std::string_view* texts, std::vector<std::uint32_t>* found, std::size_t count) const;

 private:
  static constexpr std::uint32_t kNone = ~std::uint32_t{0};

  void build_links();
  template <typename State>
  void walk(const State* next, const std::string_view* texts, std::vector<std::uint32_t>* found,
            std::size_t count) const;
  void report(std::string_view text, std::size_t i, std::uint32_t state, std::vector<std::uint32_t>& found) const;
  void renumber_breadth_first(const std::vector<std::uint32_t>& order);
  std::uint32_t add_state();

  // contains_word_aligned's test at one position (the bytes are known to match).
  static bool alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
  static constexpr std::uint64_t kFrontAlnum = 2;
  static constexpr std::uint64_t kBackAlnum = 1;
  // A pattern's length and whether its first and last bytes are ASCII letters
  // or digits, packed (length << 2 | kFrontAlnum | kBackAlnum): all that the
  // test below reads of it, in a small array instead of the pool's entries.
  static std::uint64_t shape_of(std::string_view pattern) {
    return static_cast<std::uint64_t>(pattern.size()) << 2 | (alnum(pattern.front()) ? kFrontAlnum : 0) |
           (alnum(pattern.back()) ? kBackAlnum : 0);
  }
  // The test at one position, for the pattern of `shape` ending before text[end]
  // (the bytes are known to match).
  static bool aligned_at(std::string_view text, std::uint64_t shape, std::size_t end) {
    std::size_t start = end - static_cast<std::size_t>(shape >> 2);
    bool before_ok = (shape & kFrontAlnum) == 0 || start == 0 || !alnum(text[start - 1]);
    bool after_ok = (shape & kBackAlnum) == 0 || end == text.size() || !alnum(text[end]);
    return before_ok && after_ok;
  }

  std::vector<std::uint64_t> shape_;  // shape_of() of each pool pattern
  std::array<std::uint8_t, 256> symbol_{};  // byte -> column; 0: a byte no pattern has
  int symbols_ = 0;
  std::size_t width_ = 1;
  std::vector<std::uint32_t> next_;         // state * width_ + column -> state
  // next_ in 16 bits, when every state number fits (next_ is then empty)
  std::vector<std::uint16_t, LargeAllocator<std::uint16_t>> next16_;
  std::vector<std::uint64_t> has_output_;   // bit s: state s ends a pattern or has a suffix state that does
  std::vector<std::uint32_t> output_;       // the pool index ending at a state, or kNone
  std::vector<std::uint32_t> output_link_;  // the nearest proper suffix state with an output, or kNone
};

}  // namespace metareuse::patterns_detail
