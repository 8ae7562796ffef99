// The NCCL backend of Communicator (CUDA device memory). Needs only NCCL and
// the CUDA runtime, not a CUDA libtorch. Built only with METAREUSE_WITH_NCCL
// (launch/setup.sh turns it on wherever the CUDA toolkit is, CI included).
#include <cuda_runtime.h>  // streams, events, device selection
#include <fmt/format.h>
#include <mpi.h>   // the rank for error messages when the job runs under MPI
#include <nccl.h>  // the collectives

#include <chrono>
#include <memory>
#include <thread>
#include <type_traits>

#include "gpu_check.h"
#include "metareuse/core/error.h"
#include "metareuse/distributed/device_communicator.h"

namespace metareuse {
namespace distributed_detail {

[[noreturn]] void throw_gpu_error(const char* library, int code, const char* text, const char* call, const char* file,
                                  int line) {
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string detail;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  if (std::string(library) == "NCCL") {
    const char* last = ncclGetLastError(nullptr);
    if (last != nullptr && *last != '\0') detail = fmt::format(" ({})", last);
  }
#endif
  throw Error(fmt::format("rank {}: {} call {} failed at {}:{}: {} (code {}){}", rank < 0 ? 0 : rank, library, call,
                          file, line, text, code, detail));
}

}  // namespace distributed_detail

namespace {

// Makes `device` current for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    MR_CHECK_GPU(cudaGetDevice(&previous_));
    if (previous_ != device) MR_CHECK_GPU(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// Owners of the C handles. Destruction errors are ignored: a destructor must
// not throw, and the handles are going away anyway.
struct NcclCommFree {
  void operator()(ncclComm_t comm) const { ncclCommDestroy(comm); }
};
struct StreamFree {
  void operator()(cudaStream_t stream) const { cudaStreamDestroy(stream); }
};
struct EventFree {
  void operator()(cudaEvent_t event) const { cudaEventDestroy(event); }
};
struct DeviceMemoryFree {
  void operator()(void* memory) const { cudaFree(memory); }
};
using NcclCommHandle = std::unique_ptr<std::remove_pointer_t<ncclComm_t>, NcclCommFree>;
using StreamHandle = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamFree>;
using EventHandle = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventFree>;
using DeviceMemory = std::unique_ptr<void, DeviceMemoryFree>;

EventHandle make_event() {
  cudaEvent_t event = nullptr;
  MR_CHECK_GPU(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return EventHandle(event);
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return ncclUint8;
    case DType::kInt32: return ncclInt32;
    case DType::kInt64: return ncclInt64;
    case DType::kUInt64: return ncclUint64;
    case DType::kFloat32: return ncclFloat32;
    case DType::kFloat64: return ncclFloat64;
    case DType::kFloat16: return ncclFloat16;
    // NCCL reduces bf16 on every architecture it supports (in fp32 inside the
    // kernel), so it works on P100 too, where compute in bf16 does not.
    case DType::kBFloat16: return ncclBfloat16;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator final : public DeviceCommunicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device, double collective_timeout_seconds)
      : rank_(bootstrap.rank()), size_(bootstrap.size()), device_(device), timeout_(collective_timeout_seconds) {
    int devices = 0;
    MR_CHECK_GPU(cudaGetDeviceCount(&devices));
    if (device < 0 || device >= devices) {
      throw Error(fmt::format("rank {}: CUDA device {} does not exist ({} visible)", rank_, device, devices));
    }
    DeviceGuard guard(device_);

    // Rank 0 makes the id; the host communicator (MPI, or the one-rank self
    // communicator) carries it to every rank.
    ncclUniqueId id;
    if (rank_ == 0) MR_CHECK_GPU(ncclGetUniqueId(&id));
    bootstrap.broadcast(&id, sizeof(id), DType::kUInt8, 0);
    ncclComm_t comm = nullptr;
    MR_CHECK_GPU(ncclCommInitRank(&comm, size_, id, rank_));
    comm_.reset(comm);

    cudaStream_t stream = nullptr;
    // Non-blocking: the collective stream never syncs implicitly with the
    // legacy default stream; the events below do all the ordering.
    MR_CHECK_GPU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_.reset(stream);
    ready_ = make_event();
    done_ = make_event();
    void* scratch = nullptr;
    MR_CHECK_GPU(cudaMalloc(&scratch, sizeof(float)));
    barrier_scratch_.reset(scratch);
  }

  ~NcclCommunicator() override {
    int previous = 0;
    if (cudaGetDevice(&previous) == cudaSuccess) cudaSetDevice(device_);
    // Everything queued must finish before the handles go (a hung peer was
    // already handled by wait(), which aborts the communicator).
    if (stream_) cudaStreamSynchronize(stream_.get());
    barrier_scratch_.reset();
    done_.reset();
    ready_.reset();
    stream_.reset();
    comm_.reset();
    cudaSetDevice(previous);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "nccl"; }
  int device() const override { return device_; }
  void set_compute_stream(void* stream) override { compute_stream_ = static_cast<cudaStream_t>(stream); }

  void allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op) override {
    if (count == 0) return;
    Collective collective(*this, "allreduce", buffer);
    MR_CHECK_GPU(ncclAllReduce(buffer, buffer, count, nccl_type(dtype), nccl_op(op), comm(), stream_.get()));
  }

  void allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    if (count == 0) return;
    Collective collective(*this, "allgather", recv, send);
    MR_CHECK_GPU(ncclAllGather(send, recv, count, nccl_type(dtype), comm(), stream_.get()));
  }

  void allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                  DType dtype) override {
    MR_CHECK(recv_counts.size() == static_cast<std::size_t>(size_), "allgatherv: {} counts for {} ranks",
             recv_counts.size(), size_);
    MR_CHECK(recv_counts[rank_] == send_count, "allgatherv: rank {} sends {} but recv_counts says {}", rank_,
             send_count, recv_counts[rank_]);
    Collective collective(*this, "allgatherv", recv, send_count > 0 ? send : nullptr);
    // NCCL has no allgatherv: one broadcast per rank into its block, grouped
    // so NCCL schedules them together.
    auto* out = static_cast<char*>(recv);
    const std::size_t element = dtype_size(dtype);
    MR_CHECK_GPU(ncclGroupStart());
    std::size_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      const std::size_t n = recv_counts[static_cast<std::size_t>(r)];
      if (n > 0) {
        const void* source = r == rank_ ? send : out + offset * element;
        MR_CHECK_GPU(ncclBroadcast(source, out + offset * element, n, nccl_type(dtype), r, comm(), stream_.get()));
      }
      offset += n;
    }
    MR_CHECK_GPU(ncclGroupEnd());
  }

  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp op) override {
    if (recv_count == 0) return;
    Collective collective(*this, "reduce_scatter", recv, send);
    MR_CHECK_GPU(ncclReduceScatter(send, recv, recv_count, nccl_type(dtype), nccl_op(op), comm(), stream_.get()));
  }

  void broadcast(void* buffer, std::size_t count, DType dtype, int root) override {
    MR_CHECK(root >= 0 && root < size_, "broadcast: root {} is not a rank of {}", root, size_);
    if (count == 0) return;
    Collective collective(*this, "broadcast", buffer);
    MR_CHECK_GPU(ncclBroadcast(buffer, buffer, count, nccl_type(dtype), root, comm(), stream_.get()));
  }

  void alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                 const std::vector<std::size_t>& recv_counts, DType dtype) override {
    MR_CHECK(send_counts.size() == static_cast<std::size_t>(size_) &&
                 recv_counts.size() == static_cast<std::size_t>(size_),
             "alltoallv: counts must have one entry per rank ({})", size_);
    Collective collective(*this, "alltoallv", recv, send);
    const std::size_t element = dtype_size(dtype);
    const auto* in = static_cast<const char*>(send);
    auto* out = static_cast<char*>(recv);
    MR_CHECK_GPU(ncclGroupStart());
    std::size_t send_offset = 0, recv_offset = 0;
    for (int r = 0; r < size_; ++r) {
      const auto index = static_cast<std::size_t>(r);
      if (send_counts[index] > 0) {
        MR_CHECK_GPU(ncclSend(in + send_offset * element, send_counts[index], nccl_type(dtype), r, comm(),
                              stream_.get()));
      }
      if (recv_counts[index] > 0) {
        MR_CHECK_GPU(ncclRecv(out + recv_offset * element, recv_counts[index], nccl_type(dtype), r, comm(),
                              stream_.get()));
      }
      send_offset += send_counts[index];
      recv_offset += recv_counts[index];
    }
    MR_CHECK_GPU(ncclGroupEnd());
  }

  // A one-element allreduce on device scratch, then a bounded wait: returns
  // when every rank has reached the barrier, throws if one never does.
  void barrier() override {
    allreduce(barrier_scratch_.get(), 1, DType::kFloat32, ReduceOp::kSum);
    wait(timeout_);
  }

  void wait(double timeout_seconds) override {
    if (!comm_) throw Error(fmt::format("rank {}: the NCCL communicator was aborted earlier", rank_));
    const auto start = std::chrono::steady_clock::now();
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      cudaError_t state = cudaEventQuery(done_.get());
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) MR_CHECK_GPU(state);
      ncclResult_t async_error = ncclSuccess;
      MR_CHECK_GPU(ncclCommGetAsyncError(comm_.get(), &async_error));
      if (async_error != ncclSuccess) {
        abort_communicator();
        throw Error(fmt::format("rank {}: NCCL reported an asynchronous error during {} on device {}: {}", rank_,
                                last_collective_, device_, ncclGetErrorString(async_error)));
      }
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_seconds) {
        abort_communicator();
        throw Error(fmt::format("rank {}: NCCL {} on device {} did not finish within {:.0f} s (a peer rank is "
                                "missing or hung); the NCCL communicator was aborted",
                                rank_, last_collective_, device_, timeout_seconds));
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(10000));
    }
  }

 private:
  // One collective's fences: the collective stream waits for the compute
  // stream's queued work, and the compute stream waits for the collective.
  class Collective {
   public:
    Collective(NcclCommunicator& owner, const char* name, const void* output, const void* input = nullptr)
        : owner_(owner), guard_(owner.device_) {
      owner_.require_device_memory(output, name);
      if (input != nullptr) owner_.require_device_memory(input, name);
      owner_.last_collective_ = name;
      MR_CHECK_GPU(cudaEventRecord(owner_.ready_.get(), owner_.compute_stream_));
      MR_CHECK_GPU(cudaStreamWaitEvent(owner_.stream_.get(), owner_.ready_.get(), 0));
    }
    ~Collective() noexcept(false) {
      // Skip the closing fence while an exception is already unwinding.
      if (std::uncaught_exceptions() > 0) return;
      MR_CHECK_GPU(cudaEventRecord(owner_.done_.get(), owner_.stream_.get()));
      MR_CHECK_GPU(cudaStreamWaitEvent(owner_.compute_stream_, owner_.done_.get(), 0));
    }
    Collective(const Collective&) = delete;
    Collective& operator=(const Collective&) = delete;

   private:
    NcclCommunicator& owner_;
    DeviceGuard guard_;
  };

  ncclComm_t comm() const {
    if (!comm_) throw Error(fmt::format("rank {}: the NCCL communicator was aborted earlier", rank_));
    return comm_.get();
  }

  // A host pointer given to NCCL would fault inside a kernel; this turns it
  // into a clear error (the typed helpers of Communicator take host values:
  // use the MPI communicator for those).
  void require_device_memory(const void* pointer, const char* what) const {
    cudaPointerAttributes attributes{};
    MR_CHECK_GPU(cudaPointerGetAttributes(&attributes, pointer));
    const bool on_device = attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
    if (!on_device) {
      throw Error(fmt::format("rank {}: {}: the NCCL backend takes CUDA device memory, got a host pointer", rank_,
                              what));
    }
    if (attributes.type == cudaMemoryTypeDevice && attributes.device != device_) {
      throw Error(fmt::format("rank {}: {}: buffer is on CUDA device {}, this communicator drives device {}", rank_,
                              what, attributes.device, device_));
    }
  }

  void abort_communicator() {
    // ncclCommAbort frees the communicator; the handle must not free it again.
    ncclCommAbort(comm_.release());
  }

  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  double timeout_ = 600.0;
  cudaStream_t compute_stream_ = nullptr;  // the legacy default stream until told otherwise
  const char* last_collective_ = "no collective";
  NcclCommHandle comm_;
  StreamHandle stream_;
  EventHandle ready_, done_;
  DeviceMemory barrier_scratch_;
};

}  // namespace

std::unique_ptr<DeviceCommunicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                           double collective_timeout_seconds) {
  return std::make_unique<NcclCommunicator>(bootstrap, device, collective_timeout_seconds);
}

}  // namespace metareuse
