// Helpers shared by the tests: the rank runtime (MPI tests), the reference
// data folder, temporary folders, and running the metareuse binary.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

#include "metareuse/distributed/communicator.h"  // shared_temp_dir's broadcast
#include "test_paths.h"                           // METAREUSE_SHARED_DIR and the other paths

namespace metareuse {
class Runtime;
}

namespace metareuse::test {

// Only in tests linked with mpi_main.cpp.
Runtime& runtime();

// ../shared (reference data no one here wrote), or "" when absent.
inline std::string shared_dir() {
  std::filesystem::path dir(METAREUSE_SHARED_DIR);
  return std::filesystem::exists(dir / "README.md") ? dir.string() : std::string();
}

// A fresh, empty folder under the system temp dir.
inline std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("metareuse-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// One fresh folder for every rank of the job: rank 0 makes it, the others
// learn its path. The rank count is in the name (np2 and np3 runs side by side).
inline std::filesystem::path shared_temp_dir(Communicator& world, const std::string& name) {
  std::string path;
  if (world.rank() == 0) path = temp_dir(name + "-np" + std::to_string(world.size())).string();
  path = world.broadcast_string(path, 0);
  world.barrier();
  return path;
}

// A whole file's bytes ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace metareuse::test

// Skips the current test case with a message saying why. Catch2 v2 has no SKIP,
// so where ctest runs one test case per process (catch_discover_tests sets
// METAREUSE_SKIP_EXIT=77 and SKIP_RETURN_CODE 77), the process exits with 77 and
// ctest reports the case as skipped, not passed. Elsewhere (a binary run by hand,
// or an MPI test binary that runs all its cases in one job) the case warns and
// returns, and the other cases still run.
#define METAREUSE_SKIP(message)                                                \
  do {                                                                         \
    ::metareuse::test::skip_case(message);                                     \
    WARN("SKIPPED: " << (message));                                            \
  } while (0)

namespace metareuse::test {
inline void skip_case(const std::string& message) {
  const char* code = std::getenv("METAREUSE_SKIP_EXIT");
  if (code == nullptr || *code == '\0') return;
  std::printf("SKIPPED: %s\n", message.c_str());
  std::fflush(stdout);
  std::_Exit(std::atoi(code));
}
}  // namespace metareuse::test

#define METAREUSE_SKIP_UNLESS_SHARED(dir_var)                                                  \
  const std::string dir_var = ::metareuse::test::shared_dir();                                 \
  if (dir_var.empty()) {                                                                       \
    METAREUSE_SKIP(std::string("../shared reference data not found at ") + METAREUSE_SHARED_DIR); \
    return;                                                                                    \
  }
