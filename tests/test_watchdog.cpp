// The collective watchdog: when one rank hangs, the job ends with a message
// naming the collective, instead of hanging until the scheduler kills it.
#include <catch2/catch.hpp>

#include <chrono>

#include "cli_runner.h"

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
