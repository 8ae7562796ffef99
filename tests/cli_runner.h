// Runs the metareuse binary (or any shell command) for end-to-end tests and
// captures its status and output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>  // mkstemp, close

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "test_paths.h"  // METAREUSE_SOURCE_DIR, METAREUSE_BINARY

namespace metareuse::test {

struct CommandResult {
  int status = -1;     // exit status, or 128 + signal
  std::string output;  // stdout and stderr together
};

// The command's stdout only (stderr goes where `command` sends it).
inline CommandResult run_shell_stdout(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int raw = ::pclose(pipe);
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return result;
}

inline CommandResult run_shell(const std::string& command) { return run_shell_stdout(command + " 2>&1"); }

// A command's stdout alone (its result) and its stderr (the log), read apart.
struct SplitResult {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

inline SplitResult run_shell_split(const std::string& command) {
  char err_path[] = "/tmp/metareuse-stderr-XXXXXX";
  int fd = ::mkstemp(err_path);
  if (fd < 0) return {};
  ::close(fd);
  CommandResult stdout_only = run_shell_stdout(command + " 2>'" + err_path + "'");
  SplitResult result{stdout_only.status, stdout_only.output, {}};
  if (FILE* in = std::fopen(err_path, "r")) {
    std::array<char, 4096> buffer{};
    std::size_t n;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), in)) > 0) result.err.append(buffer.data(), n);
    std::fclose(in);
  }
  std::remove(err_path);
  return result;
}

// `metareuse <args>`, run from the source tree so relative paths in configs work.
inline CommandResult run_metareuse(const std::string& args) {
  return run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR + "' && '" + METAREUSE_BINARY + "' " + args);
}

// The same, with stdout and stderr apart: a result a user pipes is stdout alone.
inline SplitResult run_metareuse_split(const std::string& args) {
  return run_shell_split(std::string("cd '") + METAREUSE_SOURCE_DIR + "' && '" + METAREUSE_BINARY + "' " + args);
}

// How many times `needle` occurs in `text` (a message printed once, not per rank).
inline int count_of(const std::string& text, const std::string& needle) {
  int count = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++count;
  return count;
}

// `mpiexec -n <ranks> metareuse <args>`, oversubscribed, allowed as root.
inline CommandResult run_metareuse_mpi(int ranks, const std::string& args) {
  return run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR +
                   "' && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpiexec -n " +
                   std::to_string(ranks) + " --oversubscribe '" + METAREUSE_BINARY + "' " + args);
}

}  // namespace metareuse::test
