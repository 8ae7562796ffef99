// Collectives on torch tensors, through the Communicator. CPU tensors go
// through the communicator given (MPI, or self); CUDA tensors go through its
// NCCL peer on the tensor's device (device_communicator.h), created on first
// use and ordered against torch's current CUDA stream. With one rank and no
// NCCL in the build, CUDA collectives are the identity (and uncounted).
#pragma once

#include <torch/types.h>  // torch::Tensor

#include "metareuse/distributed/communicator.h"

namespace metareuse {

DType dtype_of_tensor(const torch::Tensor& tensor);

// In place over every element of a contiguous tensor.
void allreduce(Communicator& comm, torch::Tensor& tensor, ReduceOp op);
// `tensor` on root is sent to every rank (same shape and dtype everywhere).
void broadcast(Communicator& comm, torch::Tensor& tensor, int root);
// Concatenates every rank's 1-D `shard` (same numel on every rank) in rank
// order. At one rank the result is `shard` itself, not a copy.
torch::Tensor allgather(Communicator& comm, const torch::Tensor& shard);
// `full` is 1-D with numel divisible by size(); returns this rank's block of
// the sum. At one rank the result is `full` itself, not a copy.
torch::Tensor reduce_scatter(Communicator& comm, const torch::Tensor& full, ReduceOp op);

// A tensor collective in flight: it holds the input and the output, which
// wait() returns once the collective has finished (on CUDA: once torch's
// current stream waits for it). One dropped before wait() keeps both
// tensors until the process ends, as its request (PendingCollective).
class PendingTensor {
 public:
  PendingTensor() = default;
  PendingTensor(PendingCollective collective, torch::Tensor input, torch::Tensor output);
  PendingTensor(PendingTensor&&) noexcept = default;
  PendingTensor& operator=(PendingTensor&& other) noexcept;
  ~PendingTensor();

  // Whether it holds an output not yet returned by wait().
  bool active() const { return output_.defined(); }
  // Lets it progress; true once finished.
  bool test();
  torch::Tensor wait();

 private:
  void abandon();
  PendingCollective collective_;
  torch::Tensor input_, output_;
};

// allgather and reduce_scatter above, started now and finished by wait().
PendingTensor start_allgather(Communicator& comm, const torch::Tensor& shard);
PendingTensor start_reduce_scatter(Communicator& comm, const torch::Tensor& full, ReduceOp op);

}  // namespace metareuse
