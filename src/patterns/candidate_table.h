// The per-rank table of candidate texts and their record support: open
// addressing on a 64-bit xxHash, texts in an arena (or borrowed from a
// received buffer), each record counted once per candidate. Hand-written
// because the standard containers cost two to three times the memory per
// candidate, and memory per rank is one of the stage's targets.
#pragma once

#include <xxhash.h>  // XXH3_64bits

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "metareuse/corpus/corpus.h"

namespace metareuse::patterns {

constexpr std::uint8_t kKindSentence = 1;
constexpr std::uint8_t kKindPhrase = 2;
constexpr std::size_t kMaxExamples = 3;
constexpr corpus::RecordKey kNoExample = ~corpus::RecordKey{0};

inline std::uint64_t hash_text(std::string_view text) { return XXH3_64bits(text.data(), text.size()); }

struct Candidate {
  const char* text = nullptr;
  std::uint32_t length = 0;
  std::uint32_t support = 0;
  std::uint32_t last_record = 0;  // local ordinal + 1 of the last record counted
  std::uint8_t kinds = 0;
  std::uint8_t example_count = 0;
  corpus::RecordKey examples[kMaxExamples] = {kNoExample, kNoExample, kNoExample};  // ascending

  std::string_view view() const { return {text, length}; }
  // Keeps the smallest keys, so the examples do not depend on the rank count.
  void add_example(corpus::RecordKey key) {
    std::size_t count = example_count;
    for (std::size_t i = 0; i < count; ++i) {
      if (examples[i] == key) return;
    }
    if (count == kMaxExamples && key >= examples[kMaxExamples - 1]) return;
    std::size_t position = count < kMaxExamples ? count : kMaxExamples - 1;
    while (position > 0 && examples[position - 1] > key) {
      examples[position] = examples[position - 1];
      --position;
    }
    examples[position] = key;
    if (count < kMaxExamples) ++example_count;
  }
};

class CandidateTable {
 public:
  CandidateTable() { rehash(1 << 16); }

  std::size_t size() const { return candidates_.size(); }
  // A deque: growing never copies (or doubles the memory of) the candidates.
  const std::deque<Candidate>& candidates() const { return candidates_; }

  // Counts `text` for local record `ordinal` (1-based, increasing), once per record.
  void count(std::string_view text, std::uint64_t hash, std::uint32_t ordinal, corpus::RecordKey key,
             std::uint8_t kind) {
    Candidate& candidate = find_or_insert(text, hash, /*copy_text=*/true);
    candidate.kinds |= kind;
    if (candidate.last_record == ordinal) return;
    candidate.last_record = ordinal;
    ++candidate.support;
    if (candidate.example_count < kMaxExamples) candidate.add_example(key);
  }

  // Adds another rank's partial count; the text stays owned by the caller's buffer.
  void merge(std::string_view text, std::uint32_t support, std::uint8_t kinds, const corpus::RecordKey* examples,
             std::size_t example_count) {
    Candidate& candidate = find_or_insert(text, hash_text(text), /*copy_text=*/false);
    candidate.support += support;
    candidate.kinds |= kinds;
    for (std::size_t i = 0; i < example_count; ++i) candidate.add_example(examples[i]);
  }

  // Drops every candidate with support <= max_support and compacts the arena.
  // Returns how many were dropped.
  std::size_t prune(std::uint32_t max_support) {
    std::deque<Candidate> kept;
    std::vector<std::unique_ptr<char[]>> old_blocks = std::move(blocks_);
    blocks_.clear();
    block_used_ = block_size_ = 0;
    for (const Candidate& candidate : candidates_) {
      if (candidate.support <= max_support) continue;
      Candidate copy = candidate;
      copy.text = store(candidate.view());
      kept.push_back(copy);
    }
    std::size_t dropped = candidates_.size() - kept.size();
    candidates_ = std::move(kept);
    rehash(slot_hashes_.size());
    return dropped;
  }

  void clear() {
    candidates_ = {};
    blocks_.clear();
    block_used_ = block_size_ = 0;
    slot_hashes_ = {};
    slot_indices_ = {};
    rehash(1 << 4);
  }

 private:
  static constexpr std::uint32_t kEmpty = ~std::uint32_t{0};
  static constexpr std::size_t kBlockBytes = std::size_t{1} << 20;

  Candidate& find_or_insert(std::string_view text, std::uint64_t hash, bool copy_text) {
    std::size_t mask = slot_hashes_.size() - 1;
    std::size_t slot = hash & mask;
    while (slot_indices_[slot] != kEmpty) {
      if (slot_hashes_[slot] == hash) {
        Candidate& candidate = candidates_[slot_indices_[slot]];
        if (candidate.length == text.size() && std::memcmp(candidate.text, text.data(), text.size()) == 0) {
          return candidate;
        }
      }
      slot = (slot + 1) & mask;
    }
    Candidate candidate;
    candidate.text = copy_text ? store(text) : text.data();
    candidate.length = static_cast<std::uint32_t>(text.size());
    slot_hashes_[slot] = hash;
    slot_indices_[slot] = static_cast<std::uint32_t>(candidates_.size());
    candidates_.push_back(candidate);
    if (candidates_.size() * 10 > slot_hashes_.size() * 7) {
      rehash(slot_hashes_.size() * 2);
      return candidates_.back();
    }
    return candidates_.back();
  }

  const char* store(std::string_view text) {
    if (block_used_ + text.size() > block_size_) {
      block_size_ = std::max(kBlockBytes, text.size());
      blocks_.push_back(std::make_unique<char[]>(block_size_));
      block_used_ = 0;
    }
    char* destination = blocks_.back().get() + block_used_;
    std::memcpy(destination, text.data(), text.size());
    block_used_ += text.size();
    return destination;
  }

  void rehash(std::size_t slots) {
    while (candidates_.size() * 10 > slots * 7) slots *= 2;
    slot_hashes_.assign(slots, 0);
    slot_indices_.assign(slots, kEmpty);
    std::size_t mask = slots - 1;
    for (std::uint32_t index = 0; index < candidates_.size(); ++index) {
      std::uint64_t hash = hash_text(candidates_[index].view());
      std::size_t slot = hash & mask;
      while (slot_indices_[slot] != kEmpty) slot = (slot + 1) & mask;
      slot_hashes_[slot] = hash;
      slot_indices_[slot] = index;
    }
  }

  std::deque<Candidate> candidates_;
  std::vector<std::uint64_t> slot_hashes_;
  std::vector<std::uint32_t> slot_indices_;
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::size_t block_used_ = 0;
  std::size_t block_size_ = 0;
};

}  // namespace metareuse::patterns
