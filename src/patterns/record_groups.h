// Normalized mode's records grouped by their normalised reasoning: records
// whose reasoning normalises to the same text (the same steps with other
// numbers, a common shape in generated and templated corpora) are mined and
// matched once, with their count as the weight, instead of once each. The
// result is the same as mining every record: a candidate's support is the
// number of records that hold it, and its examples are the smallest keys among
// them. The texts are kept up to `max_bytes` per rank (patterns.group_memory_mb);
// a record whose text does not fit is mined on its own at once (`complete()`
// turns false, and the coverage pass reads the corpus again for those records).
// Hand-written rather than a std::unordered_map<std::string, Group>: the texts
// sit in a few large blocks (no allocation per text) and a slot is a 4-byte index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "candidate_table.h"  // kMaxExamples, kNoExample
#include "metareuse/corpus/corpus.h"
#include "wire.h"

namespace metareuse::patterns_detail {

class RecordGroups {
 public:
  explicit RecordGroups(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  static constexpr std::uint32_t kNone = ~std::uint32_t{0};

  struct Group {
    std::uint64_t hash = 0;
    const char* text = nullptr;  // in blocks_ (add), or borrowed (merge)
    std::uint32_t length = 0;
    std::uint32_t count = 0;  // records with this text on this rank
    std::uint8_t key_count = 0;
    RecordKey keys[kMaxExamples] = {kNoExample, kNoExample, kNoExample};  // the first records, ascending
  };

  // The group of `text` (normalised, hashed with hash_text), or kNone.
  std::uint32_t find(std::string_view text, std::uint64_t hash) const;

  // Counts a record with `text` (key `key`, keys ascending in reading order)
  // in its group, opening the group if needed. False when the text is new and
  // does not fit: the caller mines that record alone.
  bool add(std::string_view text, std::uint64_t hash, RecordKey key);

  // Adds `count` records with `text` whose smallest keys are keys[0,
  // key_count) (another rank's group, or one of this rank's), past the memory
  // cap: a rank receives about its share of every rank's groups. The text is
  // borrowed, not copied: it must outlive this object.
  void merge(std::string_view text, std::uint64_t hash, std::uint32_t count, const RecordKey* keys,
             std::size_t key_count);

  // A group on the wire: u64 hash, u32 count, u32 length, u8 key count, the
  // keys, then the text.
  static void write_group(WireWriter& out, const Group& group);
  // merge()s each group write_group() put in `bytes`, whose texts are
  // borrowed: the bytes must outlive this object.
  void merge_written(std::string_view bytes);

  std::size_t size() const { return groups_.size(); }
  const Group& operator[](std::size_t index) const { return groups_[index]; }
  static std::string_view text(const Group& group) { return {group.text, group.length}; }

  // Makes the keys of records read with ReadOptions::number_lines_after global.
  void globalize_keys(const CorpusStats& stats);
  // Every record of this rank is in a group.
  bool complete() const { return complete_; }

 private:
  // A new group for `text` (stored or borrowed), with no records yet.
  std::uint32_t open(const char* text, std::size_t length, std::uint64_t hash);
  void place(std::uint32_t index);
  void grow();
  // The texts, in blocks that never move (a growing string would copy them
  // and, for a moment, hold them twice).
  const char* store(std::string_view text);

  std::size_t max_bytes_;
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::size_t block_used_ = 0;
  std::size_t block_size_ = 0;
  std::size_t bytes_ = 0;  // text bytes stored
  std::vector<Group> groups_;
  std::vector<std::uint32_t> slots_;  // open addressing on Group::hash; kNone: empty
  bool complete_ = true;
};

}  // namespace metareuse::patterns_detail
