// Wall-clock timing and process memory figures for logs and benchmarks.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace metareuse {

// Monotonic stopwatch.
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Peak resident set size of this process in bytes (getrusage ru_maxrss).
std::int64_t peak_rss_bytes();

// The current UTC time in strftime's format ("%Y-%m-%dT%H:%M:%SZ", ...).
std::string utc_now(const char* format);

// "1.5 GiB", "312.0 MiB", ...
std::string format_bytes(double bytes);

// Parses "16GiB", "512MB", "1024B"; a number needs its unit (only "0" may go
// without). Throws ConfigError naming the text.
std::int64_t parse_bytes(const std::string& text);

}  // namespace metareuse
