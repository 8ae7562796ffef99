// Rounds of a collective loop that may stop between two rounds: the stages
// that generate (eval, distill, reflect mode's patterns) deal each round's
// work over the ranks, and stop together on a signal or a time limit with
// their answer log (core/answer_log.h) kept for the next run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "metareuse/core/stop_signals.h"
#include "metareuse/core/timing.h"

namespace metareuse {
class Communicator;

// When to stop between rounds: a stop signal (SIGTERM, SIGUSR1, SIGINT) or
// the time limit. The run then returns kExitTimeLimit with its log kept.
class RoundStop {
 public:
  explicit RoundStop(double time_limit);  // seconds from now; 0: none

  // Collective, called before every round: true when any rank saw a signal or
  // the time limit passed. Never true before the first round, so every run
  // makes progress.
  bool stop_before_round(Communicator& communicator);

 private:
  Stopwatch wall_;
  StopSignals signals_;
  double time_limit_;
  bool started_ = false;
};

// Questions per round: every rank's batch.
std::size_t round_size(const Communicator& communicator, std::int64_t batch_size);

// rank 0's list on every rank (the items its log already holds).
std::vector<std::int64_t> share_done_items(const std::vector<std::int64_t>& rank0_items, Communicator& communicator);

}  // namespace metareuse
