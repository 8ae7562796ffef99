// Runs the metareuse binary (or any shell command) for end-to-end tests and
// captures its status and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_paths.h"  // METAREUSE_SOURCE_DIR, METAREUSE_BINARY

namespace metareuse::test {

struct CommandResult {
  int status = -1;     // exit status, or 128 + signal
  std::string output;  // stdout and stderr together
};

inline CommandResult run_shell(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int raw = ::pclose(pipe);
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return result;
}

// `metareuse <args>`, run from the source tree so relative paths in configs work.
inline CommandResult run_metareuse(const std::string& args) {
  return run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR + "' && '" + METAREUSE_BINARY + "' " + args);
}

// `mpiexec -n <ranks> metareuse <args>`, oversubscribed, allowed as root.
inline CommandResult run_metareuse_mpi(int ranks, const std::string& args) {
  return run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR +
                   "' && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpiexec -n " +
                   std::to_string(ranks) + " --oversubscribe '" + METAREUSE_BINARY + "' " + args);
}

}  // namespace metareuse::test
