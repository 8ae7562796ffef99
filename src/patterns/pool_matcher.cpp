#include "pool_matcher.h"

#include <algorithm>

namespace metareuse::patterns_detail {

PoolMatcher::PoolMatcher(const std::vector<Candidate>& pool) {
  symbol_.fill(0);
  for (const Candidate& candidate : pool) {
    for (char c : candidate.view()) {
      auto byte = static_cast<unsigned char>(c);
      if (symbol_[byte] == 0) symbol_[byte] = static_cast<std::uint8_t>(++symbols_ & 0xFF);
      if (symbols_ > 255) break;
    }
  }
  if (symbols_ > 255) {  // (more than 255 distinct bytes: one column per byte)
    for (int byte = 0; byte < 256; ++byte) symbol_[byte] = static_cast<std::uint8_t>(byte);
    symbols_ = 255;
  }
  width_ = static_cast<std::size_t>(symbols_) + 1;
  for (const Candidate& candidate : pool) shape_.push_back(shape_of(candidate.view()));
  // The trie; kNone marks a missing edge until the links fill it.
  add_state();
  for (std::uint32_t index = 0; index < pool.size(); ++index) {
    std::uint32_t state = 0;
    for (char c : pool[index].view()) {
      std::uint32_t& edge = next_[state * width_ + symbol_[static_cast<unsigned char>(c)]];
      if (edge == kNone) {
        std::uint32_t created = add_state();
        next_[state * width_ + symbol_[static_cast<unsigned char>(c)]] = created;
        state = created;
      } else {
        state = edge;
      }
    }
    output_[state] = index;
  }
  build_links();
}

// Breadth first: failure links, the nearest suffix state with an output, and
// every missing edge filled from the failure state (a DFA).
void PoolMatcher::build_links() {
  std::vector<std::uint32_t> failure(output_.size(), 0);
  std::vector<std::uint32_t> queue;
  for (std::size_t symbol = 0; symbol < width_; ++symbol) {
    std::uint32_t& edge = next_[symbol];
    if (edge == kNone) {
      edge = 0;
    } else {
      queue.push_back(edge);
    }
  }
  for (std::size_t head = 0; head < queue.size(); ++head) {
    std::uint32_t state = queue[head];
    std::uint32_t fail = failure[state];
    output_link_[state] = output_[fail] != kNone ? fail : output_link_[fail];
    for (std::size_t symbol = 0; symbol < width_; ++symbol) {
      std::uint32_t& edge = next_[state * width_ + symbol];
      if (edge == kNone) {
        edge = next_[fail * width_ + symbol];
      } else {
        failure[edge] = next_[fail * width_ + symbol];
        queue.push_back(edge);
      }
    }
  }
  renumber_breadth_first(queue);
}

// One table read per byte and lane; a state with an output (its own or a
// suffix state's) is marked in has_output_, a bitset small enough for L1.
template <typename State>
void PoolMatcher::walk(const State* next, const std::string_view* texts, std::vector<std::uint32_t>* found,
                       std::size_t count) const {
  std::uint32_t states[kLanes] = {};
  std::size_t longest = 0;
  for (std::size_t lane = 0; lane < count; ++lane) longest = std::max(longest, texts[lane].size());
  const std::uint64_t* has_output = has_output_.data();
  for (std::size_t i = 0; i < longest; ++i) {
    for (std::size_t lane = 0; lane < count; ++lane) {
      std::string_view text = texts[lane];
      if (i >= text.size()) continue;
      std::uint32_t state = next[states[lane] * width_ + symbol_[static_cast<unsigned char>(text[i])]];
      states[lane] = state;
      if ((has_output[state >> 6] >> (state & 63)) & 1) report(text, i, state, found[lane]);
    }
  }
}

void PoolMatcher::match_many(const std::string_view* texts, std::vector<std::uint32_t>* found,
                             std::size_t count) const {
  if (!next16_.empty()) {
    walk(next16_.data(), texts, found, count);
  } else {
    walk(next_.data(), texts, found, count);
  }
}

// The patterns ending at text[i] (the automaton in `state`), word-aligned ones into `found`.
void PoolMatcher::report(std::string_view text, std::size_t i, std::uint32_t state,
                         std::vector<std::uint32_t>& found) const {
  for (std::uint32_t hit = output_[state] != kNone ? state : output_link_[state]; hit != kNone;
       hit = output_link_[hit]) {
    std::uint32_t index = output_[hit];
    if (aligned_at(text, shape_[index], i + 1)) found.push_back(index);
  }
}

// Numbers the states in breadth-first order (`order`: every state but the
// root, as the links were built), so the shallow states, where the text
// keeps the automaton most of the time, share cache lines; marks the states
// with an output; and keeps the table in 16-bit state numbers when they fit
// (half the memory, so more of it stays in the caches).
void PoolMatcher::renumber_breadth_first(const std::vector<std::uint32_t>& order) {
  std::vector<std::uint32_t> number(output_.size(), 0);
  for (std::size_t i = 0; i < order.size(); ++i) number[order[i]] = static_cast<std::uint32_t>(i + 1);
  std::vector<std::uint32_t> old_next = std::move(next_);
  std::vector<std::uint32_t> old_output = std::move(output_);
  std::vector<std::uint32_t> old_link = std::move(output_link_);
  const std::size_t states = old_output.size();
  next_.assign(states * width_, 0);
  output_.assign(states, kNone);
  output_link_.assign(states, kNone);
  has_output_.assign((states + 63) / 64, 0);
  for (std::size_t old_state = 0; old_state < states; ++old_state) {
    std::uint32_t state = number[old_state];
    output_[state] = old_output[old_state];
    output_link_[state] = old_link[old_state] == kNone ? kNone : number[old_link[old_state]];
    if (old_output[old_state] != kNone || old_link[old_state] != kNone) {
      has_output_[state >> 6] |= std::uint64_t{1} << (state & 63);
    }
    for (std::size_t symbol = 0; symbol < width_; ++symbol) {
      next_[state * width_ + symbol] = number[old_next[old_state * width_ + symbol]];
    }
  }
  if (states <= 65536) {
    next16_.assign(next_.begin(), next_.end());
    next_ = {};
  }
}

std::uint32_t PoolMatcher::add_state() {
  next_.resize(next_.size() + width_, kNone);
  output_.push_back(kNone);
  output_link_.push_back(kNone);
  return static_cast<std::uint32_t>(output_.size() - 1);
}

}  // namespace metareuse::patterns_detail
