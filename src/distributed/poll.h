// Bounded polling, the one loop behind every wait on NCCL (communicator init,
// calls NCCL leaves in progress, a collective's done event). Header-only and
// GPU-free, so its bound is tested on CPU (tests/test_distributed.cpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace metareuse::distributed_detail {

enum class Poll { kDone, kPending, kFailed };

// Calls `check` until it returns kDone or kFailed, sleeping between calls with
// a backoff from 20 us to 10 ms (short waits return fast, long ones cost little
// CPU). Returns kPending once `bound_seconds` have passed (0: no bound).
template <typename Check>
Poll poll_until(Check check, double bound_seconds) {
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    const Poll state = check();
    if (state != Poll::kPending) return state;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (bound_seconds > 0 && waited > bound_seconds) return Poll::kPending;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(10000));
  }
}

}  // namespace metareuse::distributed_detail
