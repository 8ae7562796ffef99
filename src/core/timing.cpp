#include "metareuse/core/timing.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cctype>
#include <cmath>
#include <ctime>

#include "metareuse/core/error.h"

namespace metareuse {

std::int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string utc_now(const char* format) {
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[64];
  std::strftime(text, sizeof text, format, &utc);
  return text;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (std::fabs(bytes) >= 1024.0 && unit < 4) {
    bytes /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} {}", bytes, units[unit]) : fmt::format("{:.1f} {}", bytes, units[unit]);
}

std::int64_t parse_bytes(const std::string& text) {
  std::size_t pos = 0;
  while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) ++pos;
  if (pos == 0) throw ConfigError(fmt::format("'{}' is not a size (examples: 16GiB, 512MB, 1024)", text));
  double number = std::stod(text.substr(0, pos));
  std::string unit = text.substr(pos);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  // A bare number is refused: "16" for 16 GiB of device memory would be read as 16 bytes
  // and pass every check. Zero, which means "none given", needs no unit.
  if (unit.empty() && number != 0.0) {
    throw ConfigError(fmt::format("'{}' has no unit: write {}B for bytes, or e.g. {}GiB", text, text, text));
  }
  double scale;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "KiB" || unit == "K") scale = 1024.0;
  else if (unit == "MiB" || unit == "M") scale = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "TiB" || unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "KB") scale = 1e3;
  else if (unit == "MB") scale = 1e6;
  else if (unit == "GB") scale = 1e9;
  else if (unit == "TB") scale = 1e12;
  else throw ConfigError(fmt::format("'{}': unknown size unit '{}' (use B, KiB, MiB, GiB, KB, MB, GB)", text, unit));
  return static_cast<std::int64_t>(number * scale);
}

}  // namespace metareuse
