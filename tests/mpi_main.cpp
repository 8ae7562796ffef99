// Catch2 main for tests that run under mpiexec: the rank runtime lives around
// the whole session. A failure on any rank aborts the job, so no rank is left
// waiting in a collective that a failed rank will never reach.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "metareuse/distributed/runtime.h"
#include "test_support.h"

namespace metareuse::test {
namespace {
Runtime* g_runtime = nullptr;
}
Runtime& runtime() { return *g_runtime; }
}  // namespace metareuse::test

int main(int argc, char** argv) {
  metareuse::Runtime runtime("auto");
  metareuse::test::g_runtime = &runtime;
  Catch::Session session;
  int status = session.applyCommandLine(argc, argv);
  if (status != 0) return status;
  int failed = session.run();
  if (failed != 0 && runtime.world_size() > 1) {
    std::fprintf(stderr, "rank %d: %d test(s) failed; aborting the job\n", runtime.rank(), failed);
    runtime.abort(1);
  }
  return failed == 0 ? 0 : 1;
}
