// Errors and exit statuses shared by every stage.
#pragma once

#include <fmt/format.h>  // fmt::format for messages

#include <stdexcept>
#include <string>

namespace metareuse {

// Library code throws; the CLI catches, prints the message once and ends the
// job (on every rank) with one of these statuses.
enum ExitStatus : int {
  kExitOk = 0,
  kExitFailure = 1,        // any error: bad input, I/O, a failed collective
  kExitTimeLimit = 3,      // stopped at the time limit or on SIGTERM/SIGUSR1; resumable
  kExitBadRecords = 4,     // --strict and the input had bad records
  kExitUsage = 64,         // bad command line (EX_USAGE)
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A configuration key is unknown, mistyped or out of range.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Input data (a file, a record, a tensor) is malformed. The message names it.
class InputError : public Error {
 public:
  using Error::Error;
};

// A command-line usage mistake; the CLI exits with kExitUsage.
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace metareuse

// Throws metareuse::Error with a fmt-formatted message.
#define MR_THROW(...) throw ::metareuse::Error(::fmt::format(__VA_ARGS__))
// Throws metareuse::Error when cond is false, with file:line and the condition text.
#define MR_CHECK(cond, ...)                                                                    \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      throw ::metareuse::Error(::fmt::format("{} ({}:{}: check '{}' failed)",                 \
                                             ::fmt::format(__VA_ARGS__), __FILE__, __LINE__,  \
                                             #cond));                                          \
    }                                                                                          \
  } while (0)
