#include "pre_tokenizer.h"

#include <fmt/format.h>

#include "metareuse/core/error.h"

namespace metareuse::tokenizer_detail {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? fmt::format("PCRE2 error {}", code) : std::string(reinterpret_cast<char*>(buffer), n);
}

}  // namespace

PreTokenizer::PreTokenizer(const std::string& pattern)
    : pattern_(pattern), is_llama3_pattern_(pattern == kLlama3Pattern), ascii_fast_path_(is_llama3_pattern_) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // UCP: \s, \w and case folding follow Unicode properties, as in the Rust
  // (onig/fancy-regex) engines that Hugging Face and tiktoken use.
  code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                            &error_code, &error_offset, nullptr));
  if (!code_) {
    throw InputError(fmt::format("pre-tokenizer regex does not compile at offset {}: {} (pattern: {})", error_offset,
                                 pcre2_message(error_code), pattern));
  }
  // JIT makes matching several times faster; without it (a platform with no
  // JIT support) pcre2_match falls back to the interpreter with equal results.
  pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);
  match_data_.reset(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
  match_context_.reset(pcre2_match_context_create(nullptr));
  // Long whitespace runs backtrack through \s+(?!\S); give the JIT a stack
  // larger than its 32 KiB default.
  jit_stack_.reset(pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr));
  if (!match_data_ || !match_context_ || !jit_stack_) MR_THROW("pre-tokenizer: out of memory creating PCRE2 buffers");
  pcre2_jit_stack_assign(match_context_.get(), nullptr, jit_stack_.get());
}

void PreTokenizer::check_utf8(std::string_view text) const {
  bool ascii = true;
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return;
  // Without lookbehinds PCRE2 checks from the start offset to the end, so one
  // match attempt at offset 0 checks the whole text.
  std::size_t begin = 0, end = 0;
  next_match(text, 0, true, begin, end);
}

namespace {

bool is_letter(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(int c) { return c >= '0' && c <= '9'; }
// PCRE2's \s on ASCII (UCP or not): space, \t, \n, \v, \f, \r.
bool is_space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
bool is_ascii(int c) { return c >= 0 && c < 0x80; }
// [^\s\p{L}\p{N}] restricted to ASCII.
bool is_other(int c) { return is_ascii(c) && !is_space(c) && !is_letter(c) && !is_digit(c); }
int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

}  // namespace

// Each alternative of kLlama3Pattern in order; the first that matches wins,
// as in the regex. "Unsure" (false) wherever the next character matters and is
// not ASCII: a Unicode letter, digit, space or punctuation mark could extend
// or change the match (and (?i) folds U+017F to 's').
bool ascii_piece_end(std::string_view text, std::size_t begin, std::size_t& end) {
  const std::size_t size = text.size();
  auto at = [&](std::size_t k) -> int { return k < size ? static_cast<unsigned char>(text[k]) : -1; };
  const int c = at(begin);
  if (!is_ascii(c)) return false;
  auto is_non_ascii = [](int x) { return x >= 0x80; };

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c == '\'') {
    int next = at(begin + 1);
    if (is_non_ascii(next)) return false;
    int folded = lower(next);
    if (folded == 's' || folded == 't' || folded == 'm' || folded == 'd') {
      end = begin + 2;
      return true;
    }
    if (folded == 'r' || folded == 'v' || folded == 'l') {
      int third = at(begin + 2);
      if (is_non_ascii(third)) return false;
      if (lower(third) == (folded == 'l' ? 'l' : 'e')) {
        end = begin + 3;
        return true;
      }
    }
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  auto letters_from = [&](std::size_t k) {
    while (is_letter(at(k))) ++k;
    if (is_non_ascii(at(k))) return false;
    end = k;
    return true;
  };
  if (is_letter(c)) return letters_from(begin);
  if (!is_digit(c) && c != '\r' && c != '\n') {
    int next = at(begin + 1);
    if (is_non_ascii(next)) return false;
    if (is_letter(next)) return letters_from(begin + 1);
  }
  // \p{N}{1,3}
  if (is_digit(c)) {
    std::size_t k = begin + 1;
    while (k < begin + 3 && is_digit(at(k))) ++k;
    if (k < begin + 3 && is_non_ascii(at(k))) return false;
    end = k;
    return true;
  }
  // ' '?[^\s\p{L}\p{N}]+[\r\n]*
  {
    std::size_t k = c == ' ' ? begin + 1 : begin;
    if (is_non_ascii(at(k))) return false;
    if (is_other(at(k))) {
      while (is_other(at(k))) ++k;
      if (is_non_ascii(at(k))) return false;
      while (at(k) == '\r' || at(k) == '\n') ++k;
      end = k;
      return true;
    }
  }
  // Only whitespace is left: c is \s here.
  std::size_t run_end = begin;
  while (is_space(at(run_end))) ++run_end;
  if (is_non_ascii(at(run_end))) return false;  // the run might go on in Unicode whitespace
  // \s*[\r\n]+ : up to and including the run's last line break.
  for (std::size_t k = run_end; k > begin; --k) {
    if (text[k - 1] == '\r' || text[k - 1] == '\n') {
      end = k;
      return true;
    }
  }
  // \s+(?!\S) : the whole run at the end of the text, else all but its last character.
  if (run_end == size || run_end - begin >= 2) {
    end = run_end == size ? size : run_end - 1;
    return true;
  }
  // \s+
  end = run_end;
  return true;
}

bool PreTokenizer::next_match(std::string_view text, std::size_t offset, bool check_utf, std::size_t& begin,
                              std::size_t& end) const {
  int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset,
                       check_utf ? 0 : PCRE2_NO_UTF_CHECK, match_data_.get(), match_context_.get());
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) {
      throw InputError(fmt::format("text is not valid UTF-8 at byte {}: {}",
                                   pcre2_get_startchar(match_data_.get()), pcre2_message(rc)));
    }
    MR_THROW("pre-tokenizer regex failed at byte {}: {}", offset, pcre2_message(rc));
  }
  PCRE2_SIZE* vector = pcre2_get_ovector_pointer(match_data_.get());
  begin = vector[0];
  end = vector[1];
  return true;
}

}  // namespace metareuse::tokenizer_detail
