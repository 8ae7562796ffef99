#include "metareuse/core/log.h"

#include <spdlog/sinks/base_sink.h>

#include <cstdio>
#include <mutex>

#include "metareuse/core/error.h"

namespace metareuse::log {
namespace {

// Routes info and below to stdout, warnings and errors to stderr.
class SplitSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::FILE* stream = msg.level >= spdlog::level::warn ? stderr : stdout;
    std::fwrite(formatted.data(), 1, formatted.size(), stream);
    if (msg.level >= spdlog::level::warn) std::fflush(stream);
  }
  void flush_() override {
    std::fflush(stdout);
    std::fflush(stderr);
  }
};

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger>& instance() {
  static std::shared_ptr<spdlog::logger> logger;
  return logger;
}

}  // namespace

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  throw ConfigError("log level must be debug|info|warn|error|off, got '" + name + "'");
}

void init(int rank, int world_size, Level level, bool all_ranks) {
  auto logger = std::make_shared<spdlog::logger>("metareuse", std::make_shared<SplitSink>());
  logger->set_pattern(fmt::format("[%H:%M:%S] [rank {}/{}] [%l] %v", rank, world_size));
  // Other ranks stay quiet below warn unless asked: N copies of each line help no one.
  Level effective = (rank == 0 || all_ranks || level > Level::kInfo) ? level : Level::kWarn;
  logger->set_level(to_spdlog(effective));
  // Every line is flushed when written: a job log (Slurm's, a redirect) is a
  // file, fully buffered by stdio, and `tail -f` would show lines in 4 KB bursts.
  logger->flush_on(spdlog::level::trace);
  instance() = std::move(logger);
}

spdlog::logger& get() {
  if (!instance()) init(0, 1);
  return *instance();
}

}  // namespace metareuse::log
