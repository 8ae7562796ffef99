// Rounds of a stoppable collective loop (rounds.h).
#include "metareuse/distributed/rounds.h"

#include <algorithm>

#include "metareuse/distributed/communicator.h"

namespace metareuse {

RoundStop::RoundStop(double time_limit) : time_limit_(time_limit) {}

bool RoundStop::stop_before_round(Communicator& communicator) {
  if (!started_) {
    started_ = true;
    return false;
  }
  const bool stop_here = signals_.received() != 0 || (time_limit_ > 0 && wall_.seconds() >= time_limit_);
  return communicator.allreduce_value<std::int32_t>(stop_here ? 1 : 0, ReduceOp::kMax) != 0;
}

std::size_t round_size(const Communicator& communicator, std::int64_t batch_size) {
  return static_cast<std::size_t>(communicator.size()) *
         static_cast<std::size_t>(std::max<std::int64_t>(batch_size, 1));
}

std::vector<std::int64_t> share_done_items(const std::vector<std::int64_t>& rank0_items, Communicator& communicator) {
  // The other ranks add nothing, so the gathered list is rank 0's.
  return communicator.allgatherv(communicator.rank() == 0 ? rank0_items : std::vector<std::int64_t>{});
}

}  // namespace metareuse
