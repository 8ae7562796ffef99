// Byte-level BPE as Llama 3 uses it (tiktoken / Hugging Face "BPE" with
// ignore_merges): regex pre-tokenization, then each piece is either a whole
// vocabulary token or merged up from its bytes, lowest merge rank first.
// Without ignore_merges (GPT-2 style: SmolLM2) every piece is merged up.
//
// Hand-written because no Debian package provides a tiktoken-compatible BPE
// for C++ (Debian ships neither tiktoken nor Hugging Face tokenizers).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "metareuse/tokenizer/tokenizer.h"
#include "pre_tokenizer.h"

namespace metareuse::tokenizer_detail {

// Everything a byte-level BPE tokenizer is made of, in raw bytes (the GPT-2
// byte-to-unicode mapping of tokenizer.json is undone by the loader).
struct BpeModel {
  std::vector<std::string> token_bytes;  // base vocabulary: id -> bytes ("" for an unused id)
  struct Merge {
    std::int32_t rank;
    TokenId merged;
  };
  // (left id << 32 | right id) -> the merge of that pair.
  std::unordered_map<std::uint64_t, Merge> merges;
  std::vector<std::pair<std::string, TokenId>> special_tokens;  // text -> id, ids above the base vocabulary
  std::string pattern = kLlama3Pattern;
  // true (Llama 3, tiktoken): a piece that is a whole vocabulary token is that
  // token. false (GPT-2 style, SmolLM2): every piece is merged from its bytes.
  bool ignore_merges = true;
  // false (Llama 3, tiktoken): every byte must have a token. true (a
  // tokenizer.json without unk_token or byte_fallback, such as SmolLM2's, which
  // lacks 21 bytes that never occur in its training text): a byte without a
  // token is dropped, as Hugging Face's BPE drops it.
  bool drop_unknown_bytes = false;
  // The texts of the sequence start and end tokens (Llama 3's, or, for a
  // tokenizer.json without them, tokenizer_config.json's bos_token /
  // eos_token); absent ones give id -1.
  std::string bos_token = "<|begin_of_text|>";
  std::string eos_token = "<|end_of_text|>";
};

inline std::uint64_t pair_key(TokenId left, TokenId right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  // Throws InputError when the model is inconsistent (a byte has no token, a
  // merge result is not in the vocabulary).
  ByteLevelBpeTokenizer(TokenizerKind kind, BpeModel model, std::string file_hash);

  TokenizerKind kind() const override { return kind_; }
  std::int64_t vocab_size() const override { return vocab_size_; }
  std::vector<TokenId> encode(std::string_view text) const override;
  std::vector<TokenId> encode_with_special(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  std::string decode_bytes(const std::vector<TokenId>& ids) const override;
  std::optional<TokenId> special_id(std::string_view text) const override;
  TokenId bos_id() const override { return bos_id_; }
  TokenId eos_id() const override { return eos_id_; }

  // For benchmarks and tests: turn the piece cache off (every piece is merged
  // from its bytes), and read the pieces the pre-tokenizer makes.
  void set_cache_enabled(bool enabled) { cache_enabled_ = enabled; }
  void set_ascii_fast_path(bool enabled) { pre_tokenizer_.set_ascii_fast_path(enabled); }
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  // The merge rank of an adjacent pair, or -1 when the pair does not merge.
  std::int32_t merge_rank(TokenId left, TokenId right, TokenId* merged = nullptr) const;
  TokenId byte_token(unsigned char byte) const { return byte_ids_[byte]; }
  // Base-vocabulary id of exactly these bytes, or -1.
  TokenId token_id(std::string_view bytes) const;

 private:
  void encode_ordinary(std::string_view text, std::vector<TokenId>& out) const;
  void encode_piece(const char* data, std::size_t length, std::vector<TokenId>& out) const;
  void merge_bytes(const char* data, std::size_t length, std::vector<TokenId>& out) const;

  TokenizerKind kind_;
  BpeModel model_;
  std::unordered_map<std::string, TokenId> token_ids_;  // bytes -> base id
  std::unordered_map<std::string, TokenId> special_ids_;
  std::unordered_map<TokenId, std::string> special_texts_;
  std::array<TokenId, 256> byte_ids_{};
  std::int64_t vocab_size_ = 0;
  TokenId bos_id_ = -1;
  TokenId eos_id_ = -1;
  PreTokenizer pre_tokenizer_;
  bool cache_enabled_ = true;

  // Pieces recur (" the", " of", digits), so their merged ids are cached. One
  // lock per encode call keeps the const methods safe to share across threads.
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> piece_cache_;
  static constexpr std::size_t kMaxCachedPieces = 1 << 20;
};

}  // namespace metareuse::tokenizer_detail
