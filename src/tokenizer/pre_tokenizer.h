// The regex pre-tokenizer of byte-level BPE: splits text into pieces that BPE
// then encodes one by one. PCRE2 (UTF + UCP, JIT-compiled) does the matching:
// it has the \p{L} / \p{N} classes and the (?!\S) lookahead that the Llama 3
// pattern needs, which std::regex lacks.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>  // pcre2_compile, pcre2_match, JIT

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace metareuse::tokenizer_detail {

// Meta's Llama 3 pattern (identical to the Split regex in Llama 3's tokenizer.json).
inline constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's pattern: what Hugging Face's ByteLevel pre-tokenizer applies when
// "use_regex" is true (tokenizers' byte_level.rs), as in SmolLM2's tokenizer.json.
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  // Throws InputError naming the pattern and the offset of a syntax error.
  explicit PreTokenizer(const std::string& pattern);

  const std::string& pattern() const { return pattern_; }

  // For the Llama 3 pattern, ASCII stretches are matched by hand-written code
  // that follows the regex alternative by alternative (ascii_piece_end), and
  // PCRE2 takes over wherever a non-ASCII character could change the outcome.
  // GSM8K text is almost all ASCII and this doubles throughput; tests compare
  // it with PCRE2 alone on random text. Off switch for those tests.
  void set_ascii_fast_path(bool enabled) { ascii_fast_path_ = enabled && is_llama3_pattern_; }

  // Calls on_piece(begin, length) for each piece in order, matches and the text
  // between them alike (the "Isolated" split behaviour), so the pieces cover
  // the text exactly. Not thread-safe (one match buffer); callers serialise.
  // Throws InputError when the text is not valid UTF-8, naming the byte offset.
  template <typename OnPiece>
  void split(std::string_view text, OnPiece&& on_piece) const;

 private:
  struct CodeDeleter {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  struct MatchDataDeleter {
    void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
  };
  struct MatchContextDeleter {
    void operator()(pcre2_match_context* context) const { pcre2_match_context_free(context); }
  };
  struct JitStackDeleter {
    void operator()(pcre2_jit_stack* stack) const { pcre2_jit_stack_free(stack); }
  };

  // Returns the match [begin, end) at or after `offset`, or false at the end.
  bool next_match(std::string_view text, std::size_t offset, bool check_utf, std::size_t& begin,
                  std::size_t& end) const;

  // Throws InputError unless text is valid UTF-8 (PCRE2's own check).
  void check_utf8(std::string_view text) const;

  std::string pattern_;
  bool is_llama3_pattern_ = false;
  bool ascii_fast_path_ = false;
  std::unique_ptr<pcre2_code, CodeDeleter> code_;
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> match_data_;
  std::unique_ptr<pcre2_match_context, MatchContextDeleter> match_context_;
  std::unique_ptr<pcre2_jit_stack, JitStackDeleter> jit_stack_;
};

// The end of the Llama 3 pattern's match at `begin`, decided on ASCII alone;
// false when a non-ASCII character could change it (then PCRE2 decides).
bool ascii_piece_end(std::string_view text, std::size_t begin, std::size_t& end);

template <typename OnPiece>
void PreTokenizer::split(std::string_view text, OnPiece&& on_piece) const {
  std::size_t position = 0;
  // The whole text is checked for valid UTF-8 once, up front.
  check_utf8(text);
  while (position < text.size()) {
    std::size_t begin = 0, end = 0;
    if (ascii_fast_path_ && ascii_piece_end(text, position, end)) {
      on_piece(text.data() + position, end - position);
      position = end;
      continue;
    }
    if (!next_match(text, position, false, begin, end)) break;
    if (begin > position) on_piece(text.data() + position, begin - position);
    if (end == begin) {
      // The pattern cannot match empty, but a custom one might: step one code
      // point so the loop always advances.
      end = begin + 1;
      while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    }
    on_piece(text.data() + begin, end - begin);
    position = end;
  }
  if (position < text.size()) on_piece(text.data() + position, text.size() - position);
}

}  // namespace metareuse::tokenizer_detail
