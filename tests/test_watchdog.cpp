// The collective watchdog: when one rank hangs, the job ends with a message
// naming the collective, instead of hanging until the scheduler kills it;
// and a slow checkpoint writer is not mistaken for a hang.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>

#include "cli_runner.h"
#include "test_support.h"  // temp_dir

using Catch::Matchers::Contains;

TEST_CASE("a hung rank ends the job within the collective timeout", "[dist][e2e]") {
  auto start = std::chrono::steady_clock::now();
  auto result = metareuse::test::run_shell(
      std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 100 mpiexec -n 3 --oversubscribe '") +
      METAREUSE_WATCHDOG_PROBE + "' 2");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(result.output);
  CHECK(result.status != 0);
  CHECK(result.status != 124);  // not ended by the outer timeout
  CHECK_THAT(result.output, Contains("collective barrier did not complete within 2 s") &&
                                Contains("the probe's barrier"));
  CHECK(seconds < 60);
}

// The same hang during the wait for a started collective (the sharding
// engine's prefetched gathers and reduce-scatters in flight).
TEST_CASE("a hung rank during a started collective's wait ends the job within the collective timeout",
          "[dist][e2e]") {
  auto start = std::chrono::steady_clock::now();
  auto result = metareuse::test::run_shell(
      std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 100 mpiexec -n 3 --oversubscribe '") +
      METAREUSE_WATCHDOG_PROBE + "' 2 started");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(result.output);
  CHECK(result.status != 0);
  CHECK(result.status != 124);  // not ended by the outer timeout
  CHECK_THAT(result.output, Contains("collective allgather (started earlier) did not complete within 2 s") &&
                                Contains("the probe's barrier"));
  CHECK(seconds < 60);
}

// Rank 0 sleeps 1.5 s in each of its write steps (about 9 s in all) under a
// 1 s collective timeout: before the writer-aware wait, the other ranks sat in
// a watched gather or broadcast while rank 0 wrote, and the watchdog ended the
// job. Now they wait outside the watchdog, the save succeeds and nothing is killed.
TEST_CASE("a checkpoint save slower than the collective timeout does not trip the watchdog", "[dist][e2e]") {
  for (int ranks : {2, 3}) {
    INFO(ranks << " ranks");
    const auto folder = metareuse::test::temp_dir("slow-ckpt-np" + std::to_string(ranks));
    auto result = metareuse::test::run_shell(
        std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpiexec -n ") +
        std::to_string(ranks) + " --oversubscribe '" + METAREUSE_CHECKPOINT_PROBE + "' 1 1.5 '" + folder.string() +
        "'");
    INFO(result.output);
    CHECK(result.status == 0);
    CHECK_THAT(result.output, !Contains("did not complete within"));
    for (int r = 0; r < ranks; ++r) CHECK_THAT(result.output, Contains("rank " + std::to_string(r) + ": saved ok=1"));
    CHECK_THAT(result.output, Contains("parameters read back equal"));
    std::filesystem::remove_all(folder);
  }
}
