// Small text helpers shared by several stages.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace metareuse {

// `text` without leading and trailing ASCII white space (space, \t, \r, \n, \f, \v).
std::string_view trim_ascii(std::string_view text);

// Levenshtein distance, for "did you mean" messages.
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace metareuse
