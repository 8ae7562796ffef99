// The per-rank table of candidate texts and their record support: open
// addressing on a 64-bit hash, texts in an arena (or borrowed from a received
// buffer), each record counted once per candidate (RecordCandidates drops a
// record's repeats first). The hot fields (hash, support, kinds) sit in a
// 16-byte slot, so counting a candidate seen before touches one cache line. Hand-written because the standard containers cost
// two to three times the memory per candidate, and memory per rank is one of
// the stage's targets.
#pragma once

#include <sys/mman.h>  // madvise
#include <xxhash.h>      // XXH3_64bits

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <new>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "metareuse/corpus/corpus.h"

namespace metareuse::patterns_detail {

constexpr std::uint8_t kKindSentence = 1;
constexpr std::uint8_t kKindPhrase = 2;
constexpr std::size_t kMaxExamples = 3;
constexpr RecordKey kNoExample = ~RecordKey{0};

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

// Memory for the big arrays of the table (slots, entries, texts): blocks of
// 2 MiB or more are 2 MiB-aligned and advised as transparent huge pages, so a
// table of 10^6 candidates takes a few hundred page faults instead of 10^5
// (the kernel's page faults were a quarter of exact mode's time). Smaller
// requests go to operator new.
constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

inline void* allocate_large(std::size_t bytes) {
  if (bytes < kHugePageBytes) return ::operator new(bytes);
  std::size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  void* memory = std::aligned_alloc(kHugePageBytes, rounded);
  if (memory == nullptr) throw std::bad_alloc();
  ::madvise(memory, rounded, MADV_HUGEPAGE);  // advice only: without THP it changes nothing
  return memory;
}

inline void free_large(void* memory, std::size_t bytes) {
  if (bytes < kHugePageBytes) {
    ::operator delete(memory);
  } else {
    std::free(memory);
  }
}

template <typename T>
struct LargeAllocator {
  using value_type = T;
  LargeAllocator() = default;
  template <typename U>
  LargeAllocator(const LargeAllocator<U>&) {}
  T* allocate(std::size_t count) { return static_cast<T*>(allocate_large(count * sizeof(T))); }
  void deallocate(T* memory, std::size_t count) { free_large(memory, count * sizeof(T)); }
  template <typename U>
  bool operator==(const LargeAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const LargeAllocator<U>&) const { return false; }
};

// A candidate as the miner sees it (the table stores it split in two).
struct Candidate {
  std::uint64_t hash = 0;  // the table's hash of the text
  const char* text = nullptr;
  std::uint32_t length = 0;
  std::uint32_t support = 0;
  std::uint8_t kinds = 0;
  std::uint8_t example_count = 0;
  RecordKey examples[kMaxExamples] = {kNoExample, kNoExample, kNoExample};  // ascending

  std::string_view view() const { return {text, length}; }
  // Keeps the smallest keys, so the examples do not depend on the rank count.
  void add_example(RecordKey key) {
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

// Collects the distinct candidates of one record: the table counts each record
// once per candidate, so a record's repeats are dropped here, in a small set
// that is reused for every record.
class RecordCandidates {
 public:
  struct Item {
    std::string_view text;
    std::uint64_t hash;
    std::uint8_t kind;
  };

  // by_words: equal hashes mean equal candidates (normalized mode); otherwise
  // the texts are compared too (exact mode).
  explicit RecordCandidates(bool by_words) : by_words_(by_words) {}

  void clear() {
    items_.clear();
    if (++generation_ == 0) {  // the stamps wrapped around: start afresh
      std::fill(stamps_.begin(), stamps_.end(), 0);
      generation_ = 1;
    }
  }

  void add(std::string_view text, std::uint64_t hash, std::uint8_t kind) {
    if ((items_.size() + 1) * 2 > stamps_.size()) grow();
    std::size_t mask = stamps_.size() - 1;
    for (std::size_t position = hash & mask;; position = (position + 1) & mask) {
      if (stamps_[position] != generation_) {
        stamps_[position] = generation_;
        where_[position] = static_cast<std::uint32_t>(items_.size());
        items_.push_back({text, hash, kind});
        return;
      }
      Item& seen = items_[where_[position]];
      if (seen.hash == hash && (by_words_ || seen.text == text)) {
        seen.kind |= kind;
        return;
      }
    }
  }

  const std::vector<Item>& items() const { return items_; }

 private:
  void grow() {
    std::size_t size = std::max<std::size_t>(64, stamps_.size() * 2);
    stamps_.assign(size, 0);
    where_.assign(size, 0);
    generation_ = 1;
    std::vector<Item> items = std::move(items_);
    items_.clear();
    for (const Item& item : items) add(item.text, item.hash, item.kind);
  }

  bool by_words_;
  std::vector<Item> items_;
  std::vector<std::uint32_t> stamps_;  // == generation_: the slot holds an item of this record
  std::vector<std::uint32_t> where_;   // the slot's index into items_
  std::uint32_t generation_ = 1;
};

class CandidateTable {
 public:
  // by_words: hash texts with hash_words() and trust the hash (normalized mode);
  // otherwise hash_text() and compare the texts (exact mode).
  explicit CandidateTable(bool by_words) : by_words_(by_words) { resize_slots(1 << 16); }

  // Distinct candidates counted (in lazy mode the ones seen once too).
  std::size_t size() const { return lazy_ ? distinct_ : entries_.size(); }

  // Lazy mode (exact mode when min_support >= 2, most candidates being seen
  // once): a candidate seen once keeps no text and no entry, only its slot,
  // which names the record it came from (a lite slot). Its second occurrence
  // gives it an entry with that occurrence's text, taken to be the first's
  // too because the hashes are equal; the miner checks that later by reading
  // the first record again (unverified()), and counts again eagerly if two
  // texts did share a hash (collision()). In the benchmark corpus 1.18 M
  // candidates, 890 seen twice or more: the texts of the rest were half the
  // table's memory, all of it written once and never read.
  void set_lazy(bool lazy) { lazy_ = lazy; }
  bool lazy() const { return lazy_; }

  struct LiteRecord {
    RecordKey key;
    std::uint64_t offset;  // of its line, for read_lines_at
  };
  struct Unverified {
    std::uint32_t entry;    // the candidate's entry
    std::uint32_t ordinal;  // its first record (lite_record(ordinal))
  };

  // count_record() in lazy mode; the record's key and line offset are kept
  // (16 bytes a record with candidates, so never more than one a distinct
  // candidate) for the lite slots that name it.
  void count_record_lazy(const RecordCandidates& record, RecordKey key, std::uint64_t offset) {
    if (record.items().empty()) return;
    if (lite_records_.size() >= kLiteOrdinalLimit) throw std::length_error("candidate table: more than 2^29 - 1 records on one rank");
    const auto ordinal = static_cast<std::uint32_t>(lite_records_.size());
    lite_records_.push_back({key, offset});
    for (const auto& item : record.items()) prefetch(item.hash);
    for (const auto& item : record.items()) {
      const std::size_t mask = slots_.size() - 1;
      for (std::size_t position = item.hash & mask;; position = (position + 1) & mask) {
        Slot& slot = slots_[position];
        if (slot.empty()) {
          slot.hash = item.hash;
          slot.support = 1;
          slot.index_and_kinds = kLiteFlag | ordinal;
          slot.add_kinds(item.kind);
          if (++distinct_ * 10 > slots_.size() * 7) grow();
          break;
        }
        if (slot.hash != item.hash) continue;
        if (slot.lite()) {
          if (slot.lite_ordinal() == ordinal) {
            collision_ = true;  // two texts of this record share a hash
            break;
          }
          if (entries_.size() >= kLiteFlag) throw std::length_error("candidate table: more than 2^29 candidates seen twice on one rank");
          Entry entry;
          entry.text = store(item.text);
          entry.length = static_cast<std::uint32_t>(item.text.size());
          entry.add_example(lite_records_[slot.lite_ordinal()].key);
          entry.add_example(key);
          unverified_.push_back({static_cast<std::uint32_t>(entries_.size()), slot.lite_ordinal()});
          slot.set_index(static_cast<std::uint32_t>(entries_.size()));
          entries_.push_back(entry);
          slot.support = 2;
          slot.add_kinds(item.kind);
          break;
        }
        Entry& entry = entries_[slot.index()];
        if (entry.length == item.text.size() && std::memcmp(entry.text, item.text.data(), item.text.size()) == 0) {
          ++slot.support;
          // Locally each count adds a new, larger key, so the first kMaxExamples counts give the examples.
          if (slot.support <= kMaxExamples) entry.add_example(key);
          slot.add_kinds(item.kind);
          break;
        }
      }
    }
  }

  // Makes the keys of records read with ReadOptions::number_lines_after
  // global: the examples of every entry, and the lite slots' records.
  void globalize_keys(const CorpusStats& stats) {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      Entry& entry = entries_[i];
      for (std::size_t k = 0; k < entry.example_count; ++k) entry.examples[k] = stats.global_key(entry.examples[k]);
    }
    for (LiteRecord& record : lite_records_) record.key = stats.global_key(record.key);
  }

  bool collision() const { return collision_; }
  const std::vector<Unverified>& unverified() const { return unverified_; }
  const LiteRecord& lite_record(std::uint32_t ordinal) const { return lite_records_[ordinal]; }
  std::string_view entry_text(std::uint32_t entry) const { return {entries_[entry].text, entries_[entry].length}; }

  // Calls visit(ordinal) for each lite slot of `hash` (lazy mode): candidates
  // seen once here, whose text is in record lite_record(ordinal).
  template <typename Visit>
  void for_each_lite_of_hash(std::uint64_t hash, Visit&& visit) const {
    std::size_t mask = slots_.size() - 1;
    for (std::size_t position = hash & mask; !slots_[position].empty(); position = (position + 1) & mask) {
      const Slot& slot = slots_[position];
      if (slot.hash == hash && slot.lite()) visit(slot.lite_ordinal());
    }
  }

  // Counts the distinct candidates of one record (key `key`). A candidate seen
  // before touches one slot, and its entry only while it has fewer than
  // kMaxExamples examples or a new kind.
  void count_record(const RecordCandidates& record, RecordKey key) {
    for (const auto& item : record.items()) prefetch(item.hash);  // the misses overlap
    for (const auto& item : record.items()) {
      Slot& slot = find_or_insert(item.text, item.hash, /*copy_text=*/true);
      ++slot.support;
      // Locally each count adds a new, larger key, so the first kMaxExamples counts give the examples.
      if (slot.support <= kMaxExamples) entries_[slot.index()].add_example(key);
      if ((slot.kinds() & item.kind) != item.kind) slot.add_kinds(item.kind);
    }
  }

  // Counts the distinct candidates of `weight` records that hold the same
  // ones (a group of records with one normalised text), whose smallest keys
  // are keys[0, key_count). Unlike count_record, the keys need not be larger
  // than those counted before: every example is compared.
  void count_records(const RecordCandidates& record, std::uint32_t weight, const RecordKey* keys,
                     std::size_t key_count) {
    for (const auto& item : record.items()) prefetch(item.hash);
    for (const auto& item : record.items()) {
      Slot& slot = find_or_insert(item.text, item.hash, /*copy_text=*/true);
      slot.support += weight;
      Entry& entry = entries_[slot.index()];
      for (std::size_t i = 0; i < key_count; ++i) entry.add_example(keys[i]);
      if ((slot.kinds() & item.kind) != item.kind) slot.add_kinds(item.kind);
    }
  }

  // Sizes the slots for `count` candidates, so that filling never rehashes.
  void reserve(std::size_t count) {
    std::size_t slots = slots_.size();
    while (count * 10 > slots * 7) slots *= 2;
    if (slots == slots_.size()) return;
    std::vector<Slot, LargeAllocator<Slot>> old = std::move(slots_);
    resize_slots(slots);
    for (const Slot& slot : old) {
      if (!slot.empty()) place(slot);
    }
  }

  // Starts loading the slot of `hash` (call a batch ahead of the lookups).
  void prefetch(std::uint64_t hash) const { __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]); }

  // Adds another rank's partial count; the text stays owned by the caller's buffer.
  void merge(std::string_view text, std::uint32_t support, std::uint8_t kinds, const RecordKey* examples,
             std::size_t example_count) {
    Slot& slot = find_or_insert(text, by_words_ ? hash_words(text) : hash_text(text), /*copy_text=*/false);
    slot.support += support;
    slot.add_kinds(kinds);
    Entry& entry = entries_[slot.index()];
    for (std::size_t i = 0; i < example_count; ++i) entry.add_example(examples[i]);
  }

  // Calls visit(const Candidate&) for every candidate with at least
  // `min_support`. Slots are read in order and the entries they point to are
  // prefetched a few slots ahead: entries sit in insertion order, at random
  // from the slots' point of view.
  template <typename Visit>
  void for_each(Visit&& visit, std::uint32_t min_support = 0) const {
    constexpr std::size_t kAhead = 8;
    auto wanted = [&](const Slot& slot) { return !slot.empty() && !slot.lite() && slot.support >= min_support; };
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (i + kAhead < slots_.size() && wanted(slots_[i + kAhead])) {
        __builtin_prefetch(&entries_[slots_[i + kAhead].index()]);
      }
      const Slot& slot = slots_[i];
      if (wanted(slot)) visit(candidate_of(slot));
    }
  }

  // Calls visit(hash, support) for every candidate, without reading its entry.
  template <typename Visit>
  void for_each_slot(Visit&& visit) const {
    for (const Slot& slot : slots_) {
      if (!slot.empty()) visit(slot.hash, slot.support);
    }
  }

  // Calls visit(const Candidate&) for every candidate whose hash is `hash`
  // (more than one only when texts collide, in exact mode).
  template <typename Visit>
  void for_each_of_hash(std::uint64_t hash, Visit&& visit) const {
    std::size_t mask = slots_.size() - 1;
    for (std::size_t position = hash & mask; !slots_[position].empty(); position = (position + 1) & mask) {
      const Slot& slot = slots_[position];
      if (slot.hash == hash && !slot.lite()) visit(candidate_of(slot));
    }
  }

  // Drops every candidate with support <= max_support and compacts the arena.
  // Returns how many were dropped.
  std::size_t prune(std::uint32_t max_support) {
    std::vector<Slot, LargeAllocator<Slot>> old_slots = std::move(slots_);
    Entries old_entries = std::move(entries_);
    std::vector<TextBlock> old_blocks = std::move(blocks_);
    entries_.clear();
    blocks_.clear();
    block_used_ = block_size_ = 0;
    resize_slots(old_slots.size());
    std::size_t dropped = 0;
    for (const Slot& slot : old_slots) {
      if (slot.empty()) continue;
      if (slot.support <= max_support) {
        ++dropped;
        continue;
      }
      Entry entry = old_entries[slot.index()];
      entry.text = store({entry.text, entry.length});
      Slot copy = slot;
      copy.set_index(static_cast<std::uint32_t>(entries_.size()));
      entries_.push_back(entry);
      place(copy);
    }
    return dropped;
  }

  void clear() {
    entries_.clear();
    blocks_.clear();
    block_used_ = block_size_ = 0;
    slots_ = {};
    resize_slots(1 << 4);
    distinct_ = 0;
    collision_ = false;
    lite_records_ = {};
    unverified_ = {};
  }

 private:
  static constexpr std::uint32_t kEmpty = ~std::uint32_t{0};
  static constexpr std::uint32_t kIndexBits = 30;  // the top two bits of index_and_kinds hold the kinds
  static constexpr std::uint32_t kIndexMask = (std::uint32_t{1} << kIndexBits) - 1;
  // Lazy mode: an index with this bit is a lite slot's record ordinal (entries then stay below it).
  static constexpr std::uint32_t kLiteFlag = std::uint32_t{1} << (kIndexBits - 1);
  static constexpr std::uint32_t kLiteOrdinalLimit = kLiteFlag - 1;
  static constexpr std::size_t kBlockBytes = std::size_t{2} << 20;

  // The hot part, 16 bytes: four slots to a cache line.
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t index_and_kinds = kEmpty;
    std::uint32_t support = 0;

    bool empty() const { return index_and_kinds == kEmpty; }
    bool lite() const { return (index_and_kinds & kLiteFlag) != 0; }  // lazy mode; check empty() first
    std::uint32_t lite_ordinal() const { return index_and_kinds & (kLiteFlag - 1); }
    std::uint32_t index() const { return index_and_kinds & kIndexMask; }
    std::uint8_t kinds() const { return static_cast<std::uint8_t>(index_and_kinds >> kIndexBits); }
    void set_index(std::uint32_t index) { index_and_kinds = (index_and_kinds & ~kIndexMask) | index; }
    void add_kinds(std::uint8_t kinds) { index_and_kinds |= static_cast<std::uint32_t>(kinds & 3) << kIndexBits; }
  };
  // The cold part: the text and the example keys.
  struct Entry {
    const char* text = nullptr;
    std::uint32_t length = 0;
    std::uint8_t example_count = 0;
    RecordKey examples[kMaxExamples] = {kNoExample, kNoExample, kNoExample};  // ascending

    void add_example(RecordKey key) {
      Candidate ordered;
      ordered.example_count = example_count;
      std::copy(examples, examples + kMaxExamples, ordered.examples);
      ordered.add_example(key);
      example_count = ordered.example_count;
      std::copy(ordered.examples, ordered.examples + kMaxExamples, examples);
    }
  };

  static_assert(sizeof(Entry) == 40, "Entries::kChunkBits assumes 40-byte entries");

  // The entries in chunks that never move (growing copies nothing), each
  // reserved whole and filled as it goes.
  class Entries {
   public:
    std::size_t size() const { return size_; }
    Entry& operator[](std::size_t index) { return chunks_[index >> kChunkBits][index & kChunkMask]; }
    const Entry& operator[](std::size_t index) const { return chunks_[index >> kChunkBits][index & kChunkMask]; }
    void push_back(const Entry& entry) {
      if ((size_ >> kChunkBits) == chunks_.size()) {
        chunks_.emplace_back();
        chunks_.back().reserve(kChunkMask + 1);
      }
      chunks_.back().push_back(entry);
      ++size_;
    }
    void clear() {
      chunks_.clear();
      chunks_.shrink_to_fit();
      size_ = 0;
    }

   private:
    // 2^18 entries of 40 bytes fill five huge pages exactly (no half-used page per chunk).
    static constexpr std::size_t kChunkBits = 18;
    static constexpr std::size_t kChunkMask = (std::size_t{1} << kChunkBits) - 1;
    std::vector<std::vector<Entry, LargeAllocator<Entry>>> chunks_;
    std::size_t size_ = 0;
  };

  // A block of the text arena (not zeroed: every byte is written before it is read).
  struct TextBlock {
    struct Free {
      std::size_t bytes;
      void operator()(char* memory) const { free_large(memory, bytes); }
    };
    std::unique_ptr<char, Free> memory;
    char* get() const { return memory.get(); }
  };

  Candidate candidate_of(const Slot& slot) const {
    const Entry& entry = entries_[slot.index()];
    Candidate candidate;
    candidate.hash = slot.hash;
    candidate.text = entry.text;
    candidate.length = entry.length;
    candidate.support = slot.support;
    candidate.kinds = slot.kinds();
    candidate.example_count = entry.example_count;
    std::copy(entry.examples, entry.examples + kMaxExamples, candidate.examples);
    return candidate;
  }

  Slot& find_or_insert(std::string_view text, std::uint64_t hash, bool copy_text) {
    std::size_t mask = slots_.size() - 1;
    std::size_t position = hash & mask;
    while (!slots_[position].empty()) {
      Slot& slot = slots_[position];
      if (slot.hash == hash) {
        if (by_words_) return slot;
        const Entry& entry = entries_[slot.index()];
        if (entry.length == text.size() && std::memcmp(entry.text, text.data(), text.size()) == 0) return slot;
      }
      position = (position + 1) & mask;
    }
    if (entries_.size() >= kLiteFlag) throw std::length_error("candidate table: more than 2^29 candidates on one rank");
    Entry entry;
    entry.text = copy_text ? store(text) : text.data();
    entry.length = static_cast<std::uint32_t>(text.size());
    Slot& slot = slots_[position];
    slot.hash = hash;
    slot.index_and_kinds = static_cast<std::uint32_t>(entries_.size());
    entries_.push_back(entry);
    if (entries_.size() * 10 > slots_.size() * 7) {
      std::uint32_t index = slot.index();
      grow();
      return slot_of(index, hash);
    }
    return slot;
  }

  Slot& slot_of(std::uint32_t index, std::uint64_t hash) {
    std::size_t mask = slots_.size() - 1;
    std::size_t position = hash & mask;
    while (slots_[position].empty() || slots_[position].index() != index) position = (position + 1) & mask;
    return slots_[position];
  }

  void place(const Slot& slot) {
    std::size_t mask = slots_.size() - 1;
    std::size_t position = slot.hash & mask;
    while (!slots_[position].empty()) position = (position + 1) & mask;
    slots_[position] = slot;
  }

  void grow() {
    std::vector<Slot, LargeAllocator<Slot>> old = std::move(slots_);
    resize_slots(old.size() * 2);
    for (const Slot& slot : old) {
      if (!slot.empty()) place(slot);
    }
  }

  void resize_slots(std::size_t count) {
    slots_.assign(count, Slot{});
  }

  const char* store(std::string_view text) {
    if (block_used_ + text.size() > block_size_) {
      block_size_ = std::max(kBlockBytes, text.size());
      blocks_.push_back({std::unique_ptr<char, TextBlock::Free>(static_cast<char*>(allocate_large(block_size_)),
                                                                TextBlock::Free{block_size_})});
      block_used_ = 0;
    }
    char* destination = blocks_.back().get() + block_used_;
    std::memcpy(destination, text.data(), text.size());
    block_used_ += text.size();
    return destination;
  }

  bool by_words_;
  bool lazy_ = false;
  std::size_t distinct_ = 0;  // lazy mode: slots in use
  bool collision_ = false;
  std::vector<LiteRecord> lite_records_;  // lazy mode, by record ordinal
  std::vector<Unverified> unverified_;
  std::vector<Slot, LargeAllocator<Slot>> slots_;
  Entries entries_;
  std::vector<TextBlock> blocks_;
  std::size_t block_used_ = 0;
  std::size_t block_size_ = 0;
};

}  // namespace metareuse::patterns_detail
