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

PreTokenizer::PreTokenizer(const std::string& pattern) : pattern_(pattern) {
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
