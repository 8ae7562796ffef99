#include "record_groups.h"

#include <algorithm>
#include <cstring>
#include <cstdint>

namespace metareuse::patterns_detail {

std::uint32_t RecordGroups::find(std::string_view text, std::uint64_t hash) const {
  if (slots_.empty()) return kNone;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t position = hash & mask; slots_[position] != kNone; position = (position + 1) & mask) {
    const Group& group = groups_[slots_[position]];
    if (group.hash == hash && group.length == text.size() && std::memcmp(group.text, text.data(), text.size()) == 0) {
      return slots_[position];
    }
  }
  return kNone;
}

bool RecordGroups::add(std::string_view text, std::uint64_t hash, RecordKey key) {
  std::uint32_t index = find(text, hash);
  if (index == kNone) {
    if (bytes_ + text.size() > max_bytes_ || text.size() > UINT32_MAX) {
      complete_ = false;
      return false;
    }
    index = open(store(text), text.size(), hash);
  }
  Group& group = groups_[index];
  ++group.count;
  if (group.key_count < kMaxExamples) group.keys[group.key_count++] = key;
  return true;
}

void RecordGroups::merge(std::string_view text, std::uint64_t hash, std::uint32_t count,
                         const RecordKey* keys, std::size_t key_count) {
  std::uint32_t index = find(text, hash);
  if (index == kNone) index = open(text.data(), text.size(), hash);
  Group& group = groups_[index];
  group.count += count;
  // The smallest keys of both, ascending.
  RecordKey merged[2 * kMaxExamples];
  std::merge(group.keys, group.keys + group.key_count, keys, keys + key_count, merged);
  const std::size_t merged_count = std::min<std::size_t>(kMaxExamples, group.key_count + key_count);
  std::copy(merged, merged + merged_count, group.keys);
  group.key_count = static_cast<std::uint8_t>(merged_count);
}

void RecordGroups::write_group(WireWriter& out, const Group& group) {
  out.put<std::uint64_t>(group.hash);
  out.put<std::uint32_t>(group.count);
  out.put<std::uint32_t>(group.length);
  out.put<std::uint8_t>(group.key_count);
  out.put_array<RecordKey>(group.keys, group.key_count);
  out.put_bytes(group.text, group.length);
}

void RecordGroups::merge_written(std::string_view bytes) {
  WireReader in(bytes);
  while (!in.done()) {
    const auto hash = in.get<std::uint64_t>();
    const auto count = in.get<std::uint32_t>();
    const auto length = in.get<std::uint32_t>();
    const auto key_count = in.get<std::uint8_t>();
    RecordKey keys[kMaxExamples];
    in.get_array<RecordKey>(keys, key_count);
    merge(in.get_bytes(length), hash, count, keys, key_count);
  }
}

void RecordGroups::globalize_keys(const CorpusStats& stats) {
  for (Group& group : groups_) {
    for (std::size_t i = 0; i < group.key_count; ++i) group.keys[i] = stats.global_key(group.keys[i]);
  }
}

std::uint32_t RecordGroups::open(const char* text, std::size_t length, std::uint64_t hash) {
  if ((groups_.size() + 1) * 2 > slots_.size()) grow();
  const auto index = static_cast<std::uint32_t>(groups_.size());
  Group group;
  group.hash = hash;
  group.text = text;
  group.length = static_cast<std::uint32_t>(length);
  groups_.push_back(group);
  place(index);
  return index;
}

void RecordGroups::place(std::uint32_t index) {
  const std::size_t mask = slots_.size() - 1;
  std::size_t position = groups_[index].hash & mask;
  while (slots_[position] != kNone) position = (position + 1) & mask;
  slots_[position] = index;
}

void RecordGroups::grow() {
  slots_.assign(std::max<std::size_t>(1024, slots_.size() * 2), kNone);
  for (std::uint32_t index = 0; index < groups_.size(); ++index) place(index);
}

const char* RecordGroups::store(std::string_view text) {
  static constexpr std::size_t kBlockBytes = std::size_t{1} << 20;
  if (blocks_.empty() || block_used_ + text.size() > block_size_) {
    block_size_ = std::max(kBlockBytes, text.size());
    blocks_.emplace_back(new char[block_size_]);
    block_used_ = 0;
  }
  char* destination = blocks_.back().get() + block_used_;
  if (!text.empty()) std::memcpy(destination, text.data(), text.size());
  block_used_ += text.size();
  bytes_ += text.size();
  return destination;
}

}  // namespace metareuse::patterns_detail
