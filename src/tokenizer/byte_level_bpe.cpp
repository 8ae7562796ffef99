#include "byte_level_bpe.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "metareuse/core/error.h"
#include "metareuse/core/text.h"  // utf8_lossy

namespace metareuse::tokenizer_detail {

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(TokenizerKind kind, BpeModel model, std::string file_hash)
    : kind_(kind), model_(std::move(model)), pre_tokenizer_(model_.pattern) {
  file_hash_ = std::move(file_hash);
  token_ids_.reserve(model_.token_bytes.size());
  for (std::size_t id = 0; id < model_.token_bytes.size(); ++id) {
    const std::string& bytes = model_.token_bytes[id];
    if (bytes.empty()) continue;
    // The first id wins for duplicate byte strings, as in tiktoken.
    token_ids_.emplace(bytes, static_cast<TokenId>(id));
  }
  for (int byte = 0; byte < 256; ++byte) {
    auto found = token_ids_.find(std::string(1, static_cast<char>(byte)));
    if (found == token_ids_.end()) {
      if (model_.drop_unknown_bytes) {
        byte_ids_[byte] = -1;
        continue;
      }
      throw InputError(fmt::format("the vocabulary has no token for byte 0x{:02x}; byte-level BPE needs all 256", byte));
    }
    byte_ids_[byte] = found->second;
  }
  vocab_size_ = static_cast<std::int64_t>(model_.token_bytes.size());
  for (const auto& [text, id] : model_.special_tokens) {
    special_ids_.emplace(text, id);
    special_texts_.emplace(id, text);
    vocab_size_ = std::max<std::int64_t>(vocab_size_, std::int64_t{id} + 1);
  }
  auto find_special = [&](const char* text) -> TokenId {
    auto found = special_ids_.find(text);
    return found == special_ids_.end() ? -1 : found->second;
  };
  bos_id_ = find_special(model_.bos_token.c_str());
  eos_id_ = find_special(model_.eos_token.c_str());
}

TokenId ByteLevelBpeTokenizer::token_id(std::string_view bytes) const {
  auto found = token_ids_.find(std::string(bytes));
  return found == token_ids_.end() ? -1 : found->second;
}

std::int32_t ByteLevelBpeTokenizer::merge_rank(TokenId left, TokenId right, TokenId* merged) const {
  auto found = model_.merges.find(pair_key(left, right));
  if (found == model_.merges.end()) return -1;
  if (merged != nullptr) *merged = found->second.merged;
  return found->second.rank;
}

// Merges the piece's bytes: at each step the adjacent pair with the lowest
// rank merges (the leftmost on a tie), until no pair merges. The pair ranks
// are kept in an array and only the two next to a merge are looked up again,
// so a piece of n bytes costs O(n^2) array work but O(n) hash lookups.
void ByteLevelBpeTokenizer::merge_bytes(const char* data, std::size_t length, std::vector<TokenId>& out) const {
  constexpr std::int32_t kNoMerge = std::numeric_limits<std::int32_t>::max();
  std::vector<TokenId> parts;
  parts.reserve(length);
  for (std::size_t i = 0; i < length; ++i) {
    // A byte without a token is left out; its neighbours may then merge (Hugging Face's BPE).
    TokenId id = byte_ids_[static_cast<unsigned char>(data[i])];
    if (id >= 0) parts.push_back(id);
  }
  std::vector<std::int32_t> ranks(parts.size() > 0 ? parts.size() - 1 : 0);
  std::vector<TokenId> results(ranks.size());
  auto look_up = [&](std::size_t i) {
    auto found = model_.merges.find(pair_key(parts[i], parts[i + 1]));
    if (found == model_.merges.end()) {
      ranks[i] = kNoMerge;
    } else {
      ranks[i] = found->second.rank;
      results[i] = found->second.merged;
    }
  };
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) look_up(i);
  while (!ranks.empty()) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < ranks.size(); ++i) {
      if (ranks[i] < ranks[best]) best = i;
    }
    if (ranks[best] == kNoMerge) break;
    parts[best] = results[best];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    ranks.erase(ranks.begin() + static_cast<std::ptrdiff_t>(best));
    results.erase(results.begin() + static_cast<std::ptrdiff_t>(best));
    if (best < ranks.size()) look_up(best);
    if (best > 0) look_up(best - 1);
  }
  out.insert(out.end(), parts.begin(), parts.end());
}

void ByteLevelBpeTokenizer::encode_piece(const char* data, std::size_t length, std::vector<TokenId>& out) const {
  if (length == 1) {
    TokenId id = byte_ids_[static_cast<unsigned char>(data[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  std::string piece(data, length);
  // A piece that is a whole token is that token, whatever the merges would
  // make of it (tiktoken's rule; "ignore_merges": true in tokenizer.json).
  auto whole = model_.ignore_merges ? token_ids_.find(piece) : token_ids_.end();
  if (whole != token_ids_.end()) {
    out.push_back(whole->second);
    return;
  }
  if (!cache_enabled_) {
    merge_bytes(data, length, out);
    return;
  }
  auto cached = piece_cache_.find(piece);
  if (cached != piece_cache_.end()) {
    out.insert(out.end(), cached->second.begin(), cached->second.end());
    return;
  }
  std::size_t start = out.size();
  merge_bytes(data, length, out);
  if (piece_cache_.size() >= kMaxCachedPieces) piece_cache_.clear();
  piece_cache_.emplace(std::move(piece), std::vector<TokenId>(out.begin() + static_cast<std::ptrdiff_t>(start), out.end()));
}

void ByteLevelBpeTokenizer::encode_ordinary(std::string_view text, std::vector<TokenId>& out) const {
  pre_tokenizer_.split(text, [&](const char* data, std::size_t length) { encode_piece(data, length, out); });
}

std::vector<TokenId> ByteLevelBpeTokenizer::encode(std::string_view text) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 1);
  std::lock_guard<std::mutex> lock(mutex_);
  encode_ordinary(text, out);
  return out;
}

std::vector<TokenId> ByteLevelBpeTokenizer::encode_with_special(std::string_view text) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 1);
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t segment_start = 0;
  std::size_t position = 0;
  while (position < text.size()) {
    // Every special token starts with '<'; check those positions only, and
    // take the longest special token that starts there.
    std::size_t candidate = text.find('<', position);
    if (candidate == std::string_view::npos) break;
    std::size_t best_length = 0;
    TokenId best_id = -1;
    for (const auto& [special, id] : model_.special_tokens) {
      if (special.size() > best_length && text.compare(candidate, special.size(), special) == 0) {
        best_length = special.size();
        best_id = id;
      }
    }
    if (best_length == 0) {
      position = candidate + 1;
      continue;
    }
    encode_ordinary(text.substr(segment_start, candidate - segment_start), out);
    out.push_back(best_id);
    position = segment_start = candidate + best_length;
  }
  encode_ordinary(text.substr(segment_start), out);
  return out;
}

std::string ByteLevelBpeTokenizer::decode_bytes(const std::vector<TokenId>& ids) const {
  std::string text;
  text.reserve(ids.size() * 4);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    TokenId id = ids[i];
    if (id >= 0 && static_cast<std::size_t>(id) < model_.token_bytes.size() && !model_.token_bytes[id].empty()) {
      text += model_.token_bytes[id];
      continue;
    }
    auto special = special_texts_.find(id);
    if (special == special_texts_.end()) {
      throw InputError(fmt::format("token id {} at position {} is not in the vocabulary (size {})", id, i, vocab_size_));
    }
    text += special->second;
  }
  return text;
}

// Byte-level tokens are bytes: a cut inside a character (a generation's
// token budget, a lone byte token) is not UTF-8 until substituted.
std::string ByteLevelBpeTokenizer::decode(const std::vector<TokenId>& ids) const { return utf8_lossy(decode_bytes(ids)); }

std::optional<TokenId> ByteLevelBpeTokenizer::special_id(std::string_view text) const {
  auto found = special_ids_.find(std::string(text));
  if (found == special_ids_.end()) return std::nullopt;
  return found->second;
}

std::vector<std::string> ByteLevelBpeTokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  std::lock_guard<std::mutex> lock(mutex_);
  pre_tokenizer_.split(text, [&](const char* data, std::size_t length) { pieces.emplace_back(data, length); });
  return pieces;
}

}  // namespace metareuse::tokenizer_detail
