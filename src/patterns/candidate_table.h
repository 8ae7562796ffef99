// The per-rank table of candidate texts and their record support: open
// addressing on a 64-bit hash, texts in an arena (or borrowed from a received
// buffer), each record counted once per candidate. The hot fields (hash,
// support, last record) sit in the slot, so counting a candidate seen before
// touches one cache line. Hand-written because the standard containers cost
// two to three times the memory per candidate, and memory per rank is one of
// the stage's targets.
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

// Exact mode: a candidate is its bytes (hash checked by comparing the texts).
inline std::uint64_t hash_text(std::string_view text) { return XXH3_64bits(text.data(), text.size()); }

// Normalized mode: a candidate is its sequence of words, hashed word by word so
// that every n-gram of a sentence costs O(1) more. It is identified by this
// 64-bit hash alone (a collision among 10^6 candidates has odds near 10^-8).
inline std::uint64_t hash_word(std::string_view word) { return XXH3_64bits(word.data(), word.size()); }
inline std::uint64_t hash_chain(std::uint64_t chain, std::uint64_t word_hash) {
  chain = (chain ^ word_hash) * 0x9E3779B97F4A7C15ULL;
  return chain ^ (chain >> 29);
}
constexpr std::uint64_t kChainSeed = 0x2545F4914F6CDD1DULL;
inline std::uint64_t hash_words(std::string_view text) {
  std::uint64_t chain = kChainSeed;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    chain = hash_chain(chain, hash_word(text.substr(start, end - start)));
    start = end + 1;
  }
  return chain;
}

// A candidate as the miner sees it (the table stores it split in two).
struct Candidate {
  std::uint64_t hash = 0;  // the table's hash of the text
  const char* text = nullptr;
  std::uint32_t length = 0;
  std::uint32_t support = 0;
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
  // by_words: hash texts with hash_words() and trust the hash (normalized mode);
  // otherwise hash_text() and compare the texts (exact mode).
  explicit CandidateTable(bool by_words) : by_words_(by_words) { resize_slots(1 << 16); }

  std::size_t size() const { return entries_.size(); }

  // Counts `text` (whose hash is `hash`) for local record `ordinal` (1-based,
  // increasing), once per record.
  void count(std::string_view text, std::uint64_t hash, std::uint32_t ordinal, corpus::RecordKey key,
             std::uint8_t kind) {
    Slot& slot = find_or_insert(text, hash, /*copy_text=*/true);
    slot.kinds |= kind;
    if (slot.last_record == ordinal) return;
    slot.last_record = ordinal;
    ++slot.support;
    if (slot.example_count < kMaxExamples) {
      Entry& entry = entries_[slot.index];
      entry.add_example(key);
      slot.example_count = entry.example_count;
    }
  }

  // Sizes the slots for `count` candidates, so that filling never rehashes.
  void reserve(std::size_t count) {
    std::size_t slots = slots_.size();
    while (count * 10 > slots * 7) slots *= 2;
    if (slots == slots_.size()) return;
    std::vector<Slot> old = std::move(slots_);
    resize_slots(slots);
    for (const Slot& slot : old) {
      if (slot.index != kEmpty) place(slot);
    }
  }

  // Starts loading the slot of `hash` (call a batch ahead of count()).
  void prefetch(std::uint64_t hash) const { __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]); }

  // Adds another rank's partial count; the text stays owned by the caller's buffer.
  void merge(std::string_view text, std::uint32_t support, std::uint8_t kinds, const corpus::RecordKey* examples,
             std::size_t example_count) {
    Slot& slot = find_or_insert(text, by_words_ ? hash_words(text) : hash_text(text), /*copy_text=*/false);
    slot.support += support;
    slot.kinds |= kinds;
    Entry& entry = entries_[slot.index];
    for (std::size_t i = 0; i < example_count; ++i) entry.add_example(examples[i]);
    slot.example_count = entry.example_count;
  }

  // Calls visit(const Candidate&) for every candidate, in insertion order:
  // entries and texts are then read front to back, not at random.
  template <typename Visit>
  void for_each(Visit&& visit) {
    for (const Slot& slot : slots_) {
      if (slot.index == kEmpty) continue;
      Entry& entry = entries_[slot.index];
      entry.hash = slot.hash;
      entry.support = slot.support;
      entry.kinds = slot.kinds;
    }
    for (const Entry& entry : entries_) visit(static_cast<const Candidate&>(entry));
  }

  // Drops every candidate with support <= max_support and compacts the arena.
  // Returns how many were dropped.
  std::size_t prune(std::uint32_t max_support) {
    std::vector<Slot> old_slots = std::move(slots_);
    std::deque<Entry> old_entries = std::move(entries_);
    std::vector<std::unique_ptr<char[]>> old_blocks = std::move(blocks_);
    entries_.clear();
    blocks_.clear();
    block_used_ = block_size_ = 0;
    resize_slots(old_slots.size());
    std::size_t dropped = 0;
    for (const Slot& slot : old_slots) {
      if (slot.index == kEmpty) continue;
      if (slot.support <= max_support) {
        ++dropped;
        continue;
      }
      Entry entry = old_entries[slot.index];
      entry.text = store(entry.view());
      Slot copy = slot;
      copy.index = static_cast<std::uint32_t>(entries_.size());
      entries_.push_back(entry);
      place(copy);
    }
    return dropped;
  }

  void clear() {
    entries_.clear();
    entries_.shrink_to_fit();
    blocks_.clear();
    block_used_ = block_size_ = 0;
    slots_ = {};
    resize_slots(1 << 4);
  }

 private:
  static constexpr std::uint32_t kEmpty = ~std::uint32_t{0};
  static constexpr std::size_t kBlockBytes = std::size_t{1} << 20;

  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t index = kEmpty;
    std::uint32_t support = 0;
    std::uint32_t last_record = 0;  // local ordinal of the last record counted
    std::uint8_t kinds = 0;
    std::uint8_t example_count = 0;
  };
  // The cold part: the text and the example keys.
  struct Entry : Candidate {};

  Slot& find_or_insert(std::string_view text, std::uint64_t hash, bool copy_text) {
    std::size_t mask = slots_.size() - 1;
    std::size_t position = hash & mask;
    while (slots_[position].index != kEmpty) {
      Slot& slot = slots_[position];
      if (slot.hash == hash) {
        if (by_words_) return slot;
        const Entry& entry = entries_[slot.index];
        if (entry.length == text.size() && std::memcmp(entry.text, text.data(), text.size()) == 0) return slot;
      }
      position = (position + 1) & mask;
    }
    Entry entry;
    entry.text = copy_text ? store(text) : text.data();
    entry.length = static_cast<std::uint32_t>(text.size());
    Slot& slot = slots_[position];
    slot.hash = hash;
    slot.index = static_cast<std::uint32_t>(entries_.size());
    entries_.push_back(entry);
    if (entries_.size() * 10 > slots_.size() * 7) {
      std::uint32_t index = slot.index;
      grow();
      return slot_of(index, hash);
    }
    return slot;
  }

  Slot& slot_of(std::uint32_t index, std::uint64_t hash) {
    std::size_t mask = slots_.size() - 1;
    std::size_t position = hash & mask;
    while (slots_[position].index != index) position = (position + 1) & mask;
    return slots_[position];
  }

  void place(const Slot& slot) {
    std::size_t mask = slots_.size() - 1;
    std::size_t position = slot.hash & mask;
    while (slots_[position].index != kEmpty) position = (position + 1) & mask;
    slots_[position] = slot;
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    resize_slots(old.size() * 2);
    for (const Slot& slot : old) {
      if (slot.index != kEmpty) place(slot);
    }
  }

  void resize_slots(std::size_t count) {
    slots_.assign(count, Slot{});
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

  bool by_words_;
  std::vector<Slot> slots_;
  std::deque<Entry> entries_;  // a deque: growing never copies the entries
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::size_t block_used_ = 0;
  std::size_t block_size_ = 0;
};

}  // namespace metareuse::patterns
