// Communication overlapped with compute in the sharding engine (fsdp.h):
//   forward   while call k runs, call k+1's all-gather is in flight; while
//             the last call runs, its own backward's gather is;
//   backward  the gather of the call differentiated next is started before
//             this call's recompute, and this call's reduce-scatter when its
//             backward ends, waited for when the next one starts (so one is
//             in flight while the next unit computes) and at the latest at
//             the micro-step's end, before anything reads a gradient shard.
// The backward's calls are the forward's in reverse (the units form a chain).
// The forward's order is learned: each micro-step's calls are predicted to
// repeat the previous micro-step's (the first one runs in the serial order),
// as PyTorch's FSDP records the order of its first iteration. A prediction
// that fails costs one wasted gather, never a wrong result: a prefetched
// buffer is used only for the call it was started for.
//
// Every decision depends only on the sequence of calls, the same on every
// rank, so every rank starts the same collectives in the same order. Results
// are bit-identical to the serial order: a gather is a copy, a started
// reduce-scatter sums as a blocking one (communicator.h), and each unit's
// reduced blocks are added to its shard in the order they were started.
// Private to parallel/.
#pragma once

#include <torch/torch.h>  // torch::Tensor, torch::ScalarType

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "metareuse/distributed/tensor_comm.h"  // PendingTensor

namespace metareuse {

class ShardedUnit;

class OverlapSchedule {
 public:
  explicit OverlapSchedule(std::vector<std::unique_ptr<ShardedUnit>>& units) : units_(units) {}

  // A unit call with grad joins this micro-step: its position in the order.
  std::size_t begin_call(std::size_t unit, torch::ScalarType dtype, bool recompute);
  // Call `position`'s gathered buffer [padded_numel], for its forward or its
  // backward's recompute; starts the next gather the order implies.
  torch::Tensor forward_gather(std::size_t position);
  torch::Tensor backward_gather(std::size_t position);
  // Starts the reduce-scatter of call `position`'s flat gradient into its
  // unit's shard, and finishes the one started before it.
  void reduce_scatter(std::size_t position, const torch::Tensor& flat_grad);
  // Finishes every collective in flight: each reduce-scatter's block is in
  // its unit's shard afterwards. Learns this micro-step's order for the next.
  void end_micro_step();

  // Gathers served by a prefetch, and prefetches finished unused (a failed
  // prediction), since construction.
  std::int64_t prefetched() const { return prefetched_; }
  std::int64_t wasted() const { return wasted_; }

 private:
  struct Key {
    std::size_t unit;
    torch::ScalarType dtype;
    bool operator==(const Key& other) const { return unit == other.unit && dtype == other.dtype; }
  };
  struct Call {
    Key key;
    bool recompute;
  };
  struct Prefetch {
    Key key{0, torch::kFloat32};
    std::size_t position = 0;
    bool for_backward = false;
    PendingTensor buffer;
  };
  struct Reduction {
    std::size_t unit;
    PendingTensor block;
  };

  // The prefetched buffer when it was started for this use; else (after
  // waiting out any other prefetch) a gather now.
  torch::Tensor take(std::size_t position, bool for_backward);
  void prefetch(std::size_t position, bool for_backward);
  void drop_prefetch();
  void finish_oldest_reduction();
  // Lets what is in flight progress (MPI moves non-blocking collectives only
  // inside MPI calls): called at every unit boundary.
  void progress();

  std::vector<std::unique_ptr<ShardedUnit>>& units_;
  std::vector<Key> order_;   // the last micro-step's calls: the prediction
  std::vector<Call> calls_;  // this micro-step's calls so far
  bool following_ = true;    // this micro-step's calls have matched order_ so far
  Prefetch prefetch_;
  std::deque<Reduction> reductions_;  // started, oldest first
  std::int64_t prefetched_ = 0, wasted_ = 0;
};

}  // namespace metareuse
