#include "metareuse/dist/tensor_comm.h"

#include <torch/torch.h>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

void require_usable(const torch::Tensor& tensor, const char* what) {
  MR_CHECK(tensor.defined(), "{}: undefined tensor", what);
  MR_CHECK(tensor.is_contiguous(), "{}: tensor must be contiguous", what);
  MR_CHECK(tensor.device().is_cpu(), "{}: the {} backend takes CPU tensors, got {}", what, "MPI",
           tensor.device().str());
}

}  // namespace

DType dtype_of_tensor(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kUInt8: return DType::kUInt8;
    case torch::kInt32: return DType::kInt32;
    case torch::kInt64: return DType::kInt64;
    case torch::kFloat32: return DType::kFloat32;
    case torch::kFloat64: return DType::kFloat64;
    case torch::kFloat16: return DType::kFloat16;
    case torch::kBFloat16: return DType::kBFloat16;
    default: MR_THROW("no communicator dtype for tensors of {}", c10::toString(tensor.scalar_type()));
  }
}

void allreduce(Communicator& comm, torch::Tensor& tensor, ReduceOp op) {
  require_usable(tensor, "allreduce");
  comm.allreduce(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), dtype_of_tensor(tensor), op);
}

void broadcast(Communicator& comm, torch::Tensor& tensor, int root) {
  require_usable(tensor, "broadcast");
  comm.broadcast(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), dtype_of_tensor(tensor), root);
}

torch::Tensor allgather(Communicator& comm, const torch::Tensor& shard) {
  require_usable(shard, "allgather");
  MR_CHECK(shard.dim() == 1, "allgather: shard must be 1-D, got {} dims", shard.dim());
  auto full = torch::empty({shard.numel() * comm.size()}, shard.options());
  comm.allgather(shard.data_ptr(), full.data_ptr(), static_cast<std::size_t>(shard.numel()), dtype_of_tensor(shard));
  return full;
}

torch::Tensor reduce_scatter(Communicator& comm, const torch::Tensor& full, ReduceOp op) {
  require_usable(full, "reduce_scatter");
  MR_CHECK(full.dim() == 1 && full.numel() % comm.size() == 0,
           "reduce_scatter: need a 1-D tensor with numel divisible by {} ranks, got shape {}", comm.size(),
           c10::str(full.sizes()));
  auto shard = torch::empty({full.numel() / comm.size()}, full.options());
  comm.reduce_scatter(full.data_ptr(), shard.data_ptr(), static_cast<std::size_t>(shard.numel()),
                      dtype_of_tensor(full), op);
  return shard;
}

}  // namespace metareuse
