// Helpers shared by the tests: the rank runtime (MPI tests), the reference
// data folder, temporary folders, and running the metareuse binary.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

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

}  // namespace metareuse::test

// Skips the current test case (Catch2 v2 has no SKIP) with a message saying why.
#define METAREUSE_SKIP_UNLESS_SHARED(dir_var)                                                  \
  const std::string dir_var = ::metareuse::test::shared_dir();                                 \
  if (dir_var.empty()) {                                                                       \
    WARN("SKIPPED: ../shared reference data not found at " METAREUSE_SHARED_DIR);              \
    return;                                                                                    \
  }
