#include "metareuse/distributed/tensor_comm.h"

#include <ATen/record_function.h>  // RECORD_USER_SCOPE: the collectives show up in a profile (bench/train)
#include <torch/torch.h>

#if defined(METAREUSE_WITH_NCCL)
#include <c10/cuda/CUDAStream.h>  // torch's current stream, which the NCCL collectives are ordered against
#endif

#include "metareuse/core/error.h"
#include "metareuse/distributed/device_communicator.h"

namespace metareuse {
namespace {

void require_usable(const torch::Tensor& tensor, const char* what) {
  MR_CHECK(tensor.defined(), "{}: undefined tensor", what);
  MR_CHECK(tensor.is_contiguous(), "{}: tensor must be contiguous", what);
  MR_CHECK(tensor.device().is_cpu() || tensor.device().is_cuda(), "{}: tensors must be on the CPU or a CUDA device, got {}",
           what, tensor.device().str());
}

// One rank, a CUDA tensor, and no NCCL in the build: every collective is the
// identity, done with torch ops on the device (so one-GPU training works
// without NCCL).
bool local_device_identity(const Communicator& comm, const torch::Tensor& tensor) {
  return tensor.is_cuda() && comm.size() == 1 && !device_communicator_available();
}

// The communicator that serves this tensor's memory: `comm` itself for CPU
// tensors (MPI or self); for CUDA tensors its NCCL peer on the tensor's
// device, ordered against torch's current stream there.
Communicator& backend_for(Communicator& comm, const torch::Tensor& tensor) {
  if (tensor.device().is_cpu()) {
    MR_CHECK(dynamic_cast<DeviceCommunicator*>(&comm) == nullptr,
             "the {} backend takes CUDA tensors, got a CPU tensor", comm.backend_name());
    return comm;
  }
  auto* device = dynamic_cast<DeviceCommunicator*>(&comm);
  if (device == nullptr) device = &device_communicator(comm, tensor.device().index());
#if defined(METAREUSE_WITH_NCCL)
  device->set_compute_stream(c10::cuda::getCurrentCUDAStream(tensor.device().index()).stream());
#endif
  return *device;
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
  RECORD_USER_SCOPE("metareuse::comm::allreduce");
  require_usable(tensor, "allreduce");
  if (local_device_identity(comm, tensor) || tensor.numel() == 0) return;
  backend_for(comm, tensor).allreduce(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), dtype_of_tensor(tensor), op);
}

void broadcast(Communicator& comm, torch::Tensor& tensor, int root) {
  RECORD_USER_SCOPE("metareuse::comm::broadcast");
  require_usable(tensor, "broadcast");
  MR_CHECK(root >= 0 && root < comm.size(), "broadcast: root {} is not a rank of {}", root, comm.size());
  if (local_device_identity(comm, tensor) || tensor.numel() == 0) return;
  backend_for(comm, tensor).broadcast(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), dtype_of_tensor(tensor), root);
}

torch::Tensor allgather(Communicator& comm, const torch::Tensor& shard) {
  RECORD_USER_SCOPE("metareuse::comm::allgather");
  require_usable(shard, "allgather");
  MR_CHECK(shard.dim() == 1, "allgather: shard must be 1-D, got {} dims", shard.dim());
  if (local_device_identity(comm, shard)) return shard;
  if (comm.size() == 1) {
    // The shard is the whole: no copy. The call still goes through the
    // communicator, in place, so its calls are counted like any rank count's.
    if (shard.numel() > 0) {
      backend_for(comm, shard).allgather(shard.data_ptr(), shard.data_ptr(), static_cast<std::size_t>(shard.numel()),
                                         dtype_of_tensor(shard));
    }
    return shard;
  }
  auto full = torch::empty({shard.numel() * comm.size()}, shard.options());  // (size * shard,)
  if (shard.numel() == 0) return full;
  backend_for(comm, shard).allgather(shard.data_ptr(), full.data_ptr(), static_cast<std::size_t>(shard.numel()), dtype_of_tensor(shard));
  return full;
}

torch::Tensor reduce_scatter(Communicator& comm, const torch::Tensor& full, ReduceOp op) {
  RECORD_USER_SCOPE("metareuse::comm::reduce_scatter");
  require_usable(full, "reduce_scatter");
  MR_CHECK(full.dim() == 1 && full.numel() % comm.size() == 0,
           "reduce_scatter: need a 1-D tensor with numel divisible by {} ranks, got shape {}", comm.size(),
           c10::str(full.sizes()));
  if (local_device_identity(comm, full)) return full;
  if (comm.size() == 1) {
    // The sum of one block is the block itself: no copy, the call counted in place.
    if (full.numel() > 0) {
      backend_for(comm, full).reduce_scatter(full.data_ptr(), full.data_ptr(), static_cast<std::size_t>(full.numel()),
                                             dtype_of_tensor(full), op);
    }
    return full;
  }
  auto shard = torch::empty({full.numel() / comm.size()}, full.options());  // (full / size,)
  if (shard.numel() == 0) return shard;
  backend_for(comm, full).reduce_scatter(full.data_ptr(), shard.data_ptr(), static_cast<std::size_t>(shard.numel()),
                      dtype_of_tensor(full), op);
  return shard;
}

PendingTensor::PendingTensor(PendingCollective collective, torch::Tensor input, torch::Tensor output)
    : collective_(std::move(collective)), input_(std::move(input)), output_(std::move(output)) {}

PendingTensor& PendingTensor::operator=(PendingTensor&& other) noexcept {
  if (this != &other) {
    abandon();
    collective_ = std::move(other.collective_);
    input_ = std::move(other.input_);
    output_ = std::move(other.output_);
    other.output_ = torch::Tensor();
  }
  return *this;
}

PendingTensor::~PendingTensor() { abandon(); }

void PendingTensor::abandon() {
  if (!collective_.active()) return;
  // The collective may still read the input and write the output.
  static auto* kept = new std::vector<torch::Tensor>();
  kept->push_back(std::move(input_));
  kept->push_back(std::move(output_));
}

bool PendingTensor::test() { return collective_.test(); }

torch::Tensor PendingTensor::wait() {
  RECORD_USER_SCOPE("metareuse::comm::wait");
  MR_CHECK(output_.defined(), "a pending collective's output was taken already");
  collective_.wait();
  input_ = torch::Tensor();
  return std::move(output_);
}

PendingTensor start_allgather(Communicator& comm, const torch::Tensor& shard) {
  RECORD_USER_SCOPE("metareuse::comm::start_allgather");
  require_usable(shard, "allgather");
  MR_CHECK(shard.dim() == 1, "allgather: shard must be 1-D, got {} dims", shard.dim());
  if (local_device_identity(comm, shard)) return PendingTensor({}, {}, shard.clone());
  auto full = torch::empty({shard.numel() * comm.size()}, shard.options());  // (size * shard,)
  if (shard.numel() == 0) return PendingTensor({}, {}, full);
  PendingCollective started = backend_for(comm, shard).start_allgather(
      shard.data_ptr(), full.data_ptr(), static_cast<std::size_t>(shard.numel()), dtype_of_tensor(shard));
  return PendingTensor(std::move(started), shard, full);
}

PendingTensor start_reduce_scatter(Communicator& comm, const torch::Tensor& full, ReduceOp op) {
  RECORD_USER_SCOPE("metareuse::comm::start_reduce_scatter");
  require_usable(full, "reduce_scatter");
  MR_CHECK(full.dim() == 1 && full.numel() % comm.size() == 0,
           "reduce_scatter: need a 1-D tensor with numel divisible by {} ranks, got shape {}", comm.size(),
           c10::str(full.sizes()));
  if (local_device_identity(comm, full)) return PendingTensor({}, {}, full.clone());
  auto shard = torch::empty({full.numel() / comm.size()}, full.options());  // (full / size,)
  if (shard.numel() == 0) return PendingTensor({}, {}, shard);
  PendingCollective started = backend_for(comm, full).start_reduce_scatter(
      full.data_ptr(), shard.data_ptr(), static_cast<std::size_t>(shard.numel()), dtype_of_tensor(full), op);
  return PendingTensor(std::move(started), full, shard);
}

}  // namespace metareuse
