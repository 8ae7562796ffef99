// Rank-aware logging on top of spdlog: every line carries "[rank r/N]"; by
// default only rank 0 prints info; warnings and errors go to stderr from any rank.
#pragma once

#include <spdlog/spdlog.h>  // spdlog::logger, levels

#include <memory>
#include <string>

namespace metareuse::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };

// Parses "debug" | "info" | "warn" | "error" | "off"; throws ConfigError otherwise.
Level parse_level(const std::string& name);

// Installs the process-wide logger. Safe to call again (e.g. once the rank is
// known, or once the config has been read).
void init(int rank, int world_size, Level level = Level::kInfo, bool all_ranks = false);

// The logger; usable before init() (then it is "rank 0/1" at info level).
spdlog::logger& get();

template <typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
  get().debug(format, std::forward<Args>(args)...);
}
template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  get().info(format, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  get().warn(format, std::forward<Args>(args)...);
}
template <typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
  get().error(format, std::forward<Args>(args)...);
}

}  // namespace metareuse::log
