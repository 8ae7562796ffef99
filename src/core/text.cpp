#include "metareuse/core/text.h"

#include <algorithm>
#include <vector>

namespace metareuse {

std::string_view trim_ascii(std::string_view text) {
  const char* whitespace = " \t\r\n\f\v";
  std::size_t begin = text.find_first_not_of(whitespace);
  if (begin == std::string_view::npos) return {};
  std::size_t end = text.find_last_not_of(whitespace);
  return text.substr(begin, end - begin + 1);
}

// Hand-written: simdjson and PCRE2 (the packaged UTF-8 code already linked)
// validate but do not substitute, and ICU's converters are a large dependency
// for one loop.
std::string utf8_lossy(std::string_view bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(bytes.size());
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char lead = byte(i);
    if (lead < 0x80) {
      out.push_back(static_cast<char>(lead));
      ++i;
      continue;
    }
    // Length and the allowed range of the second byte (Unicode Table 3-7).
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead == 0xE0) length = 3, low = 0xA0;
    else if (lead == 0xED) length = 3, high = 0x9F;
    else if (lead >= 0xE1 && lead <= 0xEF) length = 3;
    else if (lead == 0xF0) length = 4, low = 0x90;
    else if (lead == 0xF4) length = 4, high = 0x8F;
    else if (lead >= 0xF1 && lead <= 0xF3) length = 4;
    std::size_t good = length == 0 ? 0 : 1;  // bytes of a possible sequence seen so far
    while (good > 0 && good < length && i + good < bytes.size()) {
      const unsigned char next = byte(i + good);
      const bool fits = good == 1 ? next >= low && next <= high : next >= 0x80 && next <= 0xBF;
      if (!fits) break;
      ++good;
    }
    if (length > 0 && good == length) {
      out.append(bytes.substr(i, length));
      i += length;
    } else {
      out.append(kReplacement);  // one U+FFFD for the maximal subpart (or the lone bad byte)
      i += std::max<std::size_t>(good, 1);
    }
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace metareuse
