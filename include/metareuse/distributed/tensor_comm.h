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

}  // namespace metareuse
