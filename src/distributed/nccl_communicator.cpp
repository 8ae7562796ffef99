// The NCCL backend of Communicator (CUDA device memory). Needs only NCCL and
// the CUDA runtime, not a CUDA libtorch. Built only with METAREUSE_WITH_NCCL
// (launch/setup.sh turns it on wherever the CUDA toolkit is, CI included).
#include <cuda_runtime.h>  // streams, events, device selection
#include <fmt/format.h>
#include <mpi.h>   // the rank for error messages when the job runs under MPI
#include <nccl.h>  // the collectives

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "gpu_check.h"
#include "poll.h"

// The non-blocking communicator (ncclConfig_t.blocking) came with NCCL 2.14.
#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "metareuse's NCCL backend needs NCCL 2.14 or newer (non-blocking communicator init)"
#endif
#include "metareuse/core/error.h"
#include "metareuse/distributed/device_communicator.h"

namespace metareuse {
using distributed_detail::Poll;
using distributed_detail::poll_until;
namespace distributed_detail {

[[noreturn]] void throw_gpu_error(const char* library, int code, const char* text, const char* call, const char* file,
                                  int line) {
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string detail;
  if (std::string(library) == "NCCL") {
    const char* last = ncclGetLastError(nullptr);
    if (last != nullptr && *last != '\0') detail = fmt::format(" ({})", last);
  }
  throw Error(fmt::format("rank {}: {} call {} failed at {}:{}: {} (code {}){}", rank < 0 ? 0 : rank, library, call,
                          file, line, text, code, detail));
}

}  // namespace distributed_detail

namespace {

// Makes `device` current for a scope and, only if it had to switch, restores
// the previous one. When the rank already runs on `device` (the trainer sets it
// once, early: use_cuda_device) it never calls cudaSetDevice at all: setting
// device 0 back in a process that drives device 3 would create a CUDA context
// (hundreds of MB) on GPU 0 for every rank of the node.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    MR_CHECK_GPU(cudaGetDevice(&previous_));
    if (previous_ != device) {
      MR_CHECK_GPU(cudaSetDevice(device));
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

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

// A collective queued on the communicator's stream and not yet joined by the
// compute stream: wait() makes the compute stream wait for its event (the
// host does not block); a hung one is caught by the watchdog, which watches
// every queued collective (check_progress).
class NcclRequest final : public CollectiveRequest {
 public:
  NcclRequest() = default;  // nothing was queued
  NcclRequest(EventHandle done, cudaStream_t compute_stream, int device)
      : done_(std::move(done)), compute_stream_(compute_stream), device_(device) {}

  bool test() override {
    if (!done_) return true;
    DeviceGuard guard(device_);
    const cudaError_t state = cudaEventQuery(done_.get());
    if (state == cudaErrorNotReady) return false;
    MR_CHECK_GPU(state);
    return true;
  }

  void wait() override {
    if (!done_) return;
    DeviceGuard guard(device_);
    MR_CHECK_GPU(cudaStreamWaitEvent(compute_stream_, done_.get(), 0));
  }

 private:
  EventHandle done_;
  cudaStream_t compute_stream_ = nullptr;
  int device_ = 0;
};

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
    init_communicator(id);

    cudaStream_t stream = nullptr;
    // Non-blocking: the collective stream never syncs implicitly with the
    // legacy default stream; the events below do all the ordering.
    MR_CHECK_GPU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_.reset(stream);
    ready_ = make_event();
    void* scratch = nullptr;
    MR_CHECK_GPU(cudaMalloc(&scratch, sizeof(float)));
    barrier_scratch_.reset(scratch);
  }

  ~NcclCommunicator() override {
    DeviceGuardNoThrow guard(device_);
    // Everything queued must finish before the handles go (a hung peer was
    // already handled by wait() or the watchdog, which abort the communicator).
    if (stream_ && comm_) cudaStreamSynchronize(stream_.get());
    barrier_scratch_.reset();
    {
      std::lock_guard<std::mutex> lock(pending_mutex_);
      pending_.clear();
      free_events_.clear();
    }
    ready_.reset();
    stream_.reset();
    comm_.reset();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "nccl"; }
  int device() const override { return device_; }
  void set_compute_stream(void* stream) override { compute_stream_ = static_cast<cudaStream_t>(stream); }

  void do_allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op) override {
    if (count == 0) return;
    Collective collective(*this, "allreduce", buffer);
    enqueue(ncclAllReduce(buffer, buffer, count, nccl_type(dtype), nccl_op(op), comm(), stream_.get()),
            "ncclAllReduce");
  }

  void do_allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    if (count == 0) return;
    Collective collective(*this, "allgather", recv, send);
    enqueue(ncclAllGather(send, recv, count, nccl_type(dtype), comm(), stream_.get()), "ncclAllGather");
  }

  // The started collectives: queued on the stream after the compute stream's
  // work, and joined by the compute stream only at the request's wait().
  std::unique_ptr<CollectiveRequest> do_start_allgather(const void* send, void* recv, std::size_t count,
                                                        DType dtype) override {
    if (count == 0) return std::make_unique<NcclRequest>();
    {
      Collective collective(*this, "allgather (started earlier)", recv, send, /*join_compute=*/false);
      enqueue(ncclAllGather(send, recv, count, nccl_type(dtype), comm(), stream_.get()), "ncclAllGather");
    }
    return queued_request();
  }

  std::unique_ptr<CollectiveRequest> do_start_reduce_scatter(const void* send, void* recv, std::size_t recv_count,
                                                             DType dtype, ReduceOp op) override {
    if (recv_count == 0) return std::make_unique<NcclRequest>();
    {
      Collective collective(*this, "reduce_scatter (started earlier)", recv, send, /*join_compute=*/false);
      enqueue(ncclReduceScatter(send, recv, recv_count, nccl_type(dtype), nccl_op(op), comm(), stream_.get()),
              "ncclReduceScatter");
    }
    return queued_request();
  }

  void do_allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
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
        enqueue(ncclBroadcast(source, out + offset * element, n, nccl_type(dtype), r, comm(), stream_.get()),
                "ncclBroadcast");
      }
      offset += n;
    }
    enqueue(ncclGroupEnd(), "ncclGroupEnd");
  }

  void do_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp op) override {
    if (recv_count == 0) return;
    Collective collective(*this, "reduce_scatter", recv, send);
    enqueue(ncclReduceScatter(send, recv, recv_count, nccl_type(dtype), nccl_op(op), comm(), stream_.get()),
            "ncclReduceScatter");
  }

  void do_broadcast(void* buffer, std::size_t count, DType dtype, int root) override {
    MR_CHECK(root >= 0 && root < size_, "broadcast: root {} is not a rank of {}", root, size_);
    if (count == 0) return;
    Collective collective(*this, "broadcast", buffer);
    enqueue(ncclBroadcast(buffer, buffer, count, nccl_type(dtype), root, comm(), stream_.get()), "ncclBroadcast");
  }

  void do_alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
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
        enqueue(ncclSend(in + send_offset * element, send_counts[index], nccl_type(dtype), r, comm(), stream_.get()),
                "ncclSend");
      }
      if (recv_counts[index] > 0) {
        enqueue(ncclRecv(out + recv_offset * element, recv_counts[index], nccl_type(dtype), r, comm(), stream_.get()),
                "ncclRecv");
      }
      send_offset += send_counts[index];
      recv_offset += recv_counts[index];
    }
    enqueue(ncclGroupEnd(), "ncclGroupEnd");
  }

  // A one-element allreduce on device scratch, then a bounded wait: returns
  // when every rank has reached the barrier, throws if one never does. The
  // backend's own allreduce, so a barrier counts no bytes, as on MPI.
  void barrier() override {
    do_allreduce(barrier_scratch_.get(), 1, DType::kFloat32, ReduceOp::kSum);
    wait(timeout_);
  }

  // A barrier bounded by `bound_seconds` instead of the collective timeout.
  void wait_for_rank(int root, double bound_seconds, const char* what) override {
    MR_CHECK(root >= 0 && root < size_, "wait_for_rank: root {} is not a rank of {}", root, size_);
    (void)what;
    do_allreduce(barrier_scratch_.get(), 1, DType::kFloat32, ReduceOp::kSum);
    wait(bound_seconds);
  }

  // Waits on the newest collective (the stream runs them in order, so every
  // older one has finished with it).
  void wait(double timeout_seconds) override {
    comm();  // throws when aborted earlier
    cudaEvent_t newest = nullptr;
    const char* name = "no collective";
    {
      std::lock_guard<std::mutex> lock(pending_mutex_);
      if (pending_.empty()) return;
      newest = pending_.back().done.get();
      name = pending_.back().name;
    }
    std::string error;
    const Poll outcome = poll_until(
        [&]() {
          const cudaError_t state = cudaEventQuery(newest);
          if (state == cudaSuccess) return Poll::kDone;
          if (state != cudaErrorNotReady) MR_CHECK_GPU(state);
          error = async_error(name);
          return error.empty() ? Poll::kPending : Poll::kFailed;
        },
        timeout_seconds);
    if (outcome == Poll::kFailed) throw Error(error);
    if (outcome == Poll::kPending) {
      abort_communicator();
      throw Error(timeout_message(name, timeout_seconds));
    }
    retire_finished();
  }

  std::string check_progress(double timeout_seconds) override {
    // This runs on the watchdog's thread, whose current device starts as 0:
    // make it this rank's device (its context exists already) so that no call
    // below touches GPU 0.
    if (cudaSetDevice(device_) != cudaSuccess) return "";
    std::lock_guard<std::mutex> lock(pending_mutex_);
    if (!comm_) return "";
    retire_finished_locked();
    if (pending_.empty()) return "";
    const Pending& oldest = pending_.front();
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm_.get(), &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress) {
      std::string message = async_message(oldest.name, state);
      ncclCommAbort(comm_.release());
      return message;
    }
    if (timeout_seconds > 0 && seconds_since(oldest.started) > timeout_seconds) {
      std::string message = timeout_message(oldest.name, timeout_seconds);
      ncclCommAbort(comm_.release());
      return message;
    }
    return "";
  }

 private:
  // A device guard for the destructor, which must not throw.
  class DeviceGuardNoThrow {
   public:
    explicit DeviceGuardNoThrow(int device) {
      if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) switched_ = cudaSetDevice(device) == cudaSuccess;
    }
    ~DeviceGuardNoThrow() {
      if (switched_) cudaSetDevice(previous_);
    }

   private:
    int previous_ = 0;
    bool switched_ = false;
  };

  // One collective queued on the stream and not yet seen finished: its done
  // event, its name, and when it became the oldest unfinished one (the clock
  // the watchdog reads; it does not count the collectives queued before it).
  struct Pending {
    EventHandle done;
    const char* name;
    std::chrono::steady_clock::time_point started;
  };

  // One collective's fences: the collective stream waits for the compute
  // stream's queued work, and (unless `join_compute` is false: a started
  // collective, joined at its request's wait) the compute stream waits for
  // the collective.
  class Collective {
   public:
    Collective(NcclCommunicator& owner, const char* name, const void* output, const void* input = nullptr,
               bool join_compute = true)
        : owner_(owner), guard_(owner.device_), name_(name), join_compute_(join_compute) {
      owner_.require_device_memory(output, name);
      if (input != nullptr) owner_.require_device_memory(input, name);
      owner_.retire_finished();
      owner_.current_ = name;
      MR_CHECK_GPU(cudaEventRecord(owner_.ready_.get(), owner_.compute_stream_));
      MR_CHECK_GPU(cudaStreamWaitEvent(owner_.stream_.get(), owner_.ready_.get(), 0));
    }
    ~Collective() noexcept(false) {
      // Skip the closing fence while an exception is already unwinding.
      if (std::uncaught_exceptions() > 0) return;
      EventHandle done = owner_.take_event();
      MR_CHECK_GPU(cudaEventRecord(done.get(), owner_.stream_.get()));
      if (join_compute_) MR_CHECK_GPU(cudaStreamWaitEvent(owner_.compute_stream_, done.get(), 0));
      std::lock_guard<std::mutex> lock(owner_.pending_mutex_);
      const auto now = std::chrono::steady_clock::now();
      owner_.pending_.push_back({std::move(done), name_, now});
    }
    Collective(const Collective&) = delete;
    Collective& operator=(const Collective&) = delete;

   private:
    NcclCommunicator& owner_;
    DeviceGuard guard_;
    const char* name_;
    bool join_compute_;
  };

  // A request for the collective queued last: an event recorded after it on
  // the stream (which runs collectives in order), owned by the request so that
  // it outlives the pending list's recycling.
  std::unique_ptr<CollectiveRequest> queued_request() {
    DeviceGuard guard(device_);
    EventHandle done = make_event();
    MR_CHECK_GPU(cudaEventRecord(done.get(), stream_.get()));
    return std::make_unique<NcclRequest>(std::move(done), compute_stream_, device_);
  }

  // Non-blocking init (blocking = 0): ncclCommInitRankConfig returns at once
  // and the communicator's state reads ncclInProgress until every rank has
  // joined. Polled against dist.collective_timeout, so a rank that never
  // joins (or a network NCCL cannot use) ends the job with this message
  // instead of hanging it in ncclCommInitRank.
  void init_communicator(const ncclUniqueId& id) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t comm = nullptr;
    current_ = "communicator init (ncclCommInitRankConfig)";
    const ncclResult_t started = ncclCommInitRankConfig(&comm, size_, id, rank_, &config);
    if (started != ncclSuccess && started != ncclInProgress) {
      if (comm != nullptr) ncclCommAbort(comm);
      MR_CHECK_GPU(started);
    }
    comm_.reset(comm);
    settle(current_);
    current_ = "no collective";
  }

  // On a non-blocking communicator any NCCL call may return ncclInProgress:
  // the call is still being set up, and the next call must wait until the
  // communicator's state leaves ncclInProgress.
  void enqueue(ncclResult_t result, const char* call) {
    if (result == ncclInProgress) {
      settle(call);
      return;
    }
    if (result != ncclSuccess) {
      std::string message = async_message(fmt::format("{} ({})", current_, call).c_str(), result);
      abort_communicator();
      throw Error(message);
    }
  }

  // Waits (bounded) while the communicator's state is ncclInProgress; throws
  // naming `what` on an error or the timeout, after aborting the communicator.
  void settle(const char* what) {
    ncclResult_t state = ncclSuccess;
    const Poll outcome = poll_until(
        [&]() {
          MR_CHECK_GPU(ncclCommGetAsyncError(comm(), &state));
          if (state == ncclSuccess) return Poll::kDone;
          return state == ncclInProgress ? Poll::kPending : Poll::kFailed;
        },
        timeout_);
    if (outcome == Poll::kDone) return;
    std::string message = outcome == Poll::kFailed ? async_message(what, state) : timeout_message(what, timeout_);
    abort_communicator();
    throw Error(message);
  }

  // "" while the communicator is healthy (or busy); else the message, after
  // aborting the communicator.
  std::string async_error(const char* what) {
    ncclResult_t state = ncclSuccess;
    MR_CHECK_GPU(ncclCommGetAsyncError(comm(), &state));
    if (state == ncclSuccess || state == ncclInProgress) return "";
    std::string message = async_message(what, state);
    abort_communicator();
    return message;
  }

  std::string async_message(const char* what, ncclResult_t state) const {
    const char* last = ncclGetLastError(nullptr);
    return fmt::format("rank {}: NCCL reported an error during {} on device {}: {}{}; the NCCL communicator was "
                       "aborted",
                       rank_, what, device_, ncclGetErrorString(state),
                       last != nullptr && *last != '\0' ? fmt::format(" ({})", last) : std::string());
  }

  std::string timeout_message(const char* what, double timeout_seconds) const {
    return fmt::format("rank {}/{}: NCCL {} on device {} did not finish within {:.0f} s (dist.collective_timeout; a "
                       "peer rank is missing or hung); the NCCL communicator was aborted",
                       rank_, size_, what, device_, timeout_seconds);
  }

  // An event for the next collective's done fence, reused once retired.
  EventHandle take_event() {
    {
      std::lock_guard<std::mutex> lock(pending_mutex_);
      if (!free_events_.empty()) {
        EventHandle event = std::move(free_events_.back());
        free_events_.pop_back();
        return event;
      }
    }
    return make_event();
  }

  void retire_finished() {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    retire_finished_locked();
  }

  // Drops the finished collectives from the front; the next one's clock
  // starts now (it could not run before the one ahead of it finished).
  void retire_finished_locked() {
    bool retired = false;
    while (!pending_.empty() && cudaEventQuery(pending_.front().done.get()) == cudaSuccess) {
      free_events_.push_back(std::move(pending_.front().done));
      pending_.pop_front();
      retired = true;
    }
    if (retired && !pending_.empty()) pending_.front().started = std::chrono::steady_clock::now();
  }

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
    std::lock_guard<std::mutex> lock(pending_mutex_);
    // ncclCommAbort frees the communicator; the handle must not free it again.
    if (comm_) ncclCommAbort(comm_.release());
  }

  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  double timeout_ = 600.0;
  cudaStream_t compute_stream_ = nullptr;  // the legacy default stream until told otherwise
  const char* current_ = "no collective";  // the collective being enqueued, for error messages
  NcclCommHandle comm_;
  StreamHandle stream_;
  EventHandle ready_;
  // The collectives queued and not yet seen finished, oldest first. The
  // watchdog's thread reads them (check_progress), hence the mutex; it also
  // guards comm_'s release by an abort.
  std::mutex pending_mutex_;
  std::deque<Pending> pending_;
  std::vector<EventHandle> free_events_;
  DeviceMemory barrier_scratch_;
};

}  // namespace

std::unique_ptr<DeviceCommunicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                           double collective_timeout_seconds) {
  return std::make_unique<NcclCommunicator>(bootstrap, device, collective_timeout_seconds);
}

}  // namespace metareuse
