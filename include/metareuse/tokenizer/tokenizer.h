// Tokenizers: Llama 3 byte-level BPE (from Hugging Face tokenizer.json or
// Meta's tiktoken tokenizer.model) and sentencepiece (.model, through a shim
// library so it never shares a process image with libtorch's protobuf).
//
// Security rule: encode() treats its input as ordinary text, so corpus text that
// contains "<|eot_id|>" becomes the ids of those characters, never the special
// token. Special tokens come only from the templates below (or from
// encode_with_special(), which the CLI's --special flag opts into).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace metareuse {

using TokenId = std::int32_t;

enum class TokenizerKind { kHuggingFaceJson, kTiktoken, kSentencePiece };

// "tokenizer.json", "tiktoken", "sentencepiece".
const char* tokenizer_kind_name(TokenizerKind kind);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual TokenizerKind kind() const = 0;
  // Ids are in [0, vocab_size()), special tokens included.
  virtual std::int64_t vocab_size() const = 0;

  // Ordinary text: special-token strings in it are encoded as plain text.
  // Throws InputError on text that is not valid UTF-8 (naming the byte offset).
  virtual std::vector<TokenId> encode(std::string_view text) const = 0;
  // As encode(), but special-token strings ("<|eot_id|>") become their ids.
  virtual std::vector<TokenId> encode_with_special(std::string_view text) const = 0;
  // Text, always valid UTF-8: where the tokens' bytes are not (a byte-level
  // token can be one byte of a character, a generation can stop inside one),
  // U+FFFD, as transformers' decode (core/text.h's utf8_lossy). Throws
  // InputError on an id outside the vocabulary.
  virtual std::string decode(const std::vector<TokenId>& ids) const = 0;
  // The tokens' bytes as the vocabulary holds them, not always UTF-8: what
  // byte offsets into encoded text are counted in. Default: decode().
  virtual std::string decode_bytes(const std::vector<TokenId>& ids) const { return decode(ids); }

  // The id of a special token by its text ("<|eot_id|>", "<s>"), if any.
  virtual std::optional<TokenId> special_id(std::string_view text) const = 0;
  virtual TokenId bos_id() const = 0;
  virtual TokenId eos_id() const = 0;

  // xxh3-64 of the file the tokenizer was loaded from, as 16 hex digits: two
  // tokenizers with the same hash tokenize identically.
  const std::string& file_hash() const { return file_hash_; }
  // "kind:vocab_size:hash", stored in tokenized datasets and checked on load.
  std::string identity() const;

 protected:
  std::string file_hash_;
};

// Loads a tokenizer, detecting its kind from the file's content. A file that
// is none of the three, or is malformed, throws InputError naming the file and
// what is wrong (the key, the line).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// ---- Templates: the only place special tokens enter a sequence. ----

// Ids and a per-token loss mask (1 = the model is trained to predict this token).
struct TokenizedExample {
  std::vector<TokenId> ids;
  std::vector<std::uint8_t> loss_mask;
};

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;  // trimmed of surrounding whitespace, as Llama 3's template does
  bool train = false;   // loss mask 1 on this message's content and its <|eot_id|>
};

// Llama 3 instruct format:
//   <|begin_of_text|> { <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|> }
// followed, if add_generation_prompt, by an open assistant header. Needs a
// tokenizer with those special tokens (Llama 3); throws InputError otherwise.
TokenizedExample apply_chat_template(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt = false);

// Base-model format: bos + prompt + target + eos, loss mask 1 on target and eos.
// Prompt and target are encoded separately (the split point is a token boundary).
TokenizedExample apply_plain_template(const Tokenizer& tokenizer, std::string_view prompt, std::string_view target);

}  // namespace metareuse
