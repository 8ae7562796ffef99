#include "metareuse/core/log.h"

#include <spdlog/sinks/base_sink.h>

#include <cstdio>
#include <mutex>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

// Every level goes to stderr: stdout carries only a command's result (the ids
// of tokenize, the JSON lines of generate, the tables of plan, info and eval),
// so `metareuse generate ... | jq` reads nothing but the result.
class StderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::fwrite(formatted.data(), 1, formatted.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger>& instance() {
  static std::shared_ptr<spdlog::logger> logger;
  return logger;
}

}  // namespace

LogLevel parse_log_level(const std::string& name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  throw ConfigError("log level must be debug|info|warn|error|off, got '" + name + "'");
}

void log_init(int rank, int world_size, LogLevel level, bool all_ranks) {
  auto logger = std::make_shared<spdlog::logger>("metareuse", std::make_shared<StderrSink>());
  logger->set_pattern(fmt::format("[%H:%M:%S] [rank {}/{}] [%l] %v", rank, world_size));
  // Other ranks stay quiet below warn unless asked: N copies of each line help no one.
  LogLevel effective = (rank == 0 || all_ranks || level > LogLevel::kInfo) ? level : LogLevel::kWarn;
  logger->set_level(to_spdlog(effective));
  // Every line is flushed when written: a job log (Slurm's, a redirect) is a
  // file, fully buffered by stdio, and `tail -f` would show lines in 4 KB bursts.
  logger->flush_on(spdlog::level::trace);
  instance() = std::move(logger);
}

spdlog::logger& logger() {
  if (!instance()) log_init(0, 1);
  return *instance();
}

}  // namespace metareuse
