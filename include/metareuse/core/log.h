// Rank-aware logging on top of spdlog: every line carries "[rank r/N]" and goes
// to stderr (stdout is for results); by default only rank 0 prints info,
// warnings and errors come from any rank.
#pragma once

#include <spdlog/spdlog.h>  // spdlog::logger, levels

#include <memory>
#include <string>

namespace metareuse {

enum class LogLevel { kDebug, kInfo, kWarn, kError, kOff };

// Parses "debug" | "info" | "warn" | "error" | "off"; throws ConfigError otherwise.
LogLevel parse_log_level(const std::string& name);

// Installs the process-wide logger. Safe to call again (e.g. once the rank is
// known, or once the config has been read).
void log_init(int rank, int world_size, LogLevel level = LogLevel::kInfo, bool all_ranks = false);

// The logger; usable before log_init() (then it is "rank 0/1" at info level).
spdlog::logger& logger();

template <typename... Args>
void log_debug(fmt::format_string<Args...> format, Args&&... args) {
  logger().debug(format, std::forward<Args>(args)...);
}
template <typename... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  logger().info(format, std::forward<Args>(args)...);
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> format, Args&&... args) {
  logger().warn(format, std::forward<Args>(args)...);
}
template <typename... Args>
void log_error(fmt::format_string<Args...> format, Args&&... args) {
  logger().error(format, std::forward<Args>(args)...);
}

}  // namespace metareuse
