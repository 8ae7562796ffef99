// Small text helpers shared by several stages.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace metareuse {

// `text` without leading and trailing ASCII white space (space, \t, \r, \n, \f, \v).
std::string_view trim_ascii(std::string_view text);

// `bytes` as valid UTF-8: each ill-formed subsequence becomes U+FFFD, by the
// "maximal subpart" practice of Unicode 15 §3.9 (a lead byte and the
// continuation bytes that could still complete it count as one), as Rust's
// String::from_utf8_lossy, and so tokenizers' ByteLevel decoder, and Python's
// bytes.decode(errors="replace") do. Decoded model output needs it: a
// generation may stop inside a multi-byte character.
std::string utf8_lossy(std::string_view bytes);

// Levenshtein distance, for "did you mean" messages.
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace metareuse
