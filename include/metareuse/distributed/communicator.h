// The communicator: every collective metareuse uses, on host buffers. The MPI
// backend serves CPU memory; an NCCL backend for CUDA tensors plugs into the
// same interface. When the job has one rank, every call is a local copy, so the
// rest of the program never asks whether it is distributed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace metareuse {

enum class DType { kUInt8, kInt32, kInt64, kUInt64, kFloat32, kFloat64, kFloat16, kBFloat16 };
enum class ReduceOp { kSum, kMax, kMin };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* reduce_op_name(ReduceOp op);

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, std::uint8_t> || std::is_same_v<T, char>) return DType::kUInt8;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DType::kInt32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::kInt64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return DType::kUInt64;
  else if constexpr (std::is_same_v<T, float>) return DType::kFloat32;
  else if constexpr (std::is_same_v<T, double>) return DType::kFloat64;
  else static_assert(sizeof(T) == 0, "no DType for this element type");
}

// What one rank sends and receives in one kind of collective, counted as
// the logical payload of the textbook algorithm, not what MPI or NCCL really
// move (their algorithm is theirs, and changes with size and topology): a
// ring for all-gather, reduce-scatter and all-reduce, a chain for broadcast,
// direct exchange for all-to-all. With n ranks and a full buffer of N bytes:
//   all-gather      sent = received = (n-1)/n * N (allgatherv: the ring's
//                   blocks: received all but its own, sent all but the next
//                   rank's)
//   reduce-scatter  sent = received = (n-1)/n * N
//   all-reduce      sent = received = 2 (n-1)/n * N, with the buffer padded to
//                   n equal chunks (2 (n-1) ceil(count/n) elements), the ring's
//                   reduce-scatter then all-gather
//   broadcast       N received by every rank but the root, N sent by every
//                   rank but the chain's last, (root + n - 1) mod n
//   all-to-all      the blocks for (from) the other ranks
// A barrier moves nothing. At one rank every count is 0.
struct CollectiveBytes {
  std::uint64_t calls = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
};

// A rank's collective traffic by kind (docs/scaling.md turns it into step time).
struct CollectiveTraffic {
  CollectiveBytes allreduce, allgather, reduce_scatter, broadcast, alltoall;
  // Seconds this rank's host was blocked on collectives: each blocking
  // collective whole, each started one (start_allgather, start_reduce_scatter)
  // only inside its wait(). What overlap hides does not count. Under NCCL the
  // host does not block on the device, so this is host time only.
  double wait_seconds = 0;

  std::uint64_t sent() const;
  std::uint64_t received() const;
  // What was counted between `earlier` and this.
  CollectiveTraffic since(const CollectiveTraffic& earlier) const;
};

// This process's traffic since it started, over every communicator it used
// (a rank's NCCL peer is another object than its MPI communicator, and its
// link carries both). Plain integers, cost nothing measurable: collectives
// are issued by one thread (the watchdog only reads the clock).
CollectiveTraffic collective_traffic();

// A collective started and not finished: its buffers must stay untouched and
// alive until wait() returns. Backends implement it; callers hold it in a
// PendingCollective.
class CollectiveRequest {
 public:
  virtual ~CollectiveRequest() = default;
  // Lets the collective progress without blocking (MPI progresses non-blocking
  // collectives only inside MPI calls); true once it has finished.
  virtual bool test() = 0;
  // Returns once the collective has finished and its output may be read. A
  // peer that never joins is caught as in a blocking collective (the MPI
  // backend's wait is watched by the collective watchdog; NCCL's is the
  // stream's, see device_communicator.h).
  virtual void wait() = 0;
};

// The caller's handle on a started collective (Communicator::start_allgather,
// start_reduce_scatter): move-only; wait() once, then it is empty. Dropping one
// that was never waited for keeps its request alive until the process ends
// (freeing an active MPI request is erroneous), which only an error path does.
class PendingCollective {
 public:
  PendingCollective() = default;
  explicit PendingCollective(std::unique_ptr<CollectiveRequest> request);
  PendingCollective(PendingCollective&&) noexcept = default;
  PendingCollective& operator=(PendingCollective&& other) noexcept;
  ~PendingCollective();

  bool active() const { return request_ != nullptr; }
  bool test();
  // Blocks until done; the blocked time counts in CollectiveTraffic::wait_seconds.
  void wait();

 private:
  void abandon();
  std::unique_ptr<CollectiveRequest> request_;
};

// Every collective goes through the public calls below, which count its bytes
// (CollectiveBytes) and hand it to the backend's do_* call.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;

  // In place: buffer[i] = op over ranks of buffer[i].
  void allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op);
  // recv holds size() * count elements; rank r's block lands at r * count.
  // `send` may be this rank's own block of recv (in place).
  void allgather(const void* send, void* recv, std::size_t count, DType dtype);
  // Uneven allgather: rank r contributes recv_counts[r] elements (send_count
  // must equal recv_counts[rank()]); they land contiguously in rank order.
  void allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                  DType dtype);
  // send holds size() * recv_count elements; recv gets block rank() of the
  // element-wise reduction over ranks. `send` may be `recv` (in place: the
  // buffer holds size() * recv_count elements, the result its first block).
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp op);
  // The same two, started now and finished by the handle's wait(), so that
  // compute can run while they are in flight. Bytes count when started. A
  // started reduce-scatter sums in the same order as reduce_scatter(), so
  // waiting later never changes a result. Every rank starts the same
  // collectives in the same order, blocking ones included.
  PendingCollective start_allgather(const void* send, void* recv, std::size_t count, DType dtype);
  PendingCollective start_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                                         ReduceOp op);
  void broadcast(void* buffer, std::size_t count, DType dtype, int root);
  // send_counts[r] elements go to rank r (blocks contiguous in rank order);
  // recv_counts[r] elements arrive from rank r.
  void alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                 const std::vector<std::size_t>& recv_counts, DType dtype);
  virtual void barrier() = 0;
  // A barrier that waits for `root` to finish slow local work (rank 0 writing
  // a checkpoint file), outside the collective watchdog: the waiting ranks
  // are idle, not hung, however slow the filesystem. A root that dies still
  // ends the job (the launcher); one that stays stuck is bounded by
  // `bound_seconds` (0: none), after which this throws naming `what`. The
  // default is barrier(), for backends that have no watchdog-watched wait;
  // the MPI backend polls a non-blocking barrier instead.
  virtual void wait_for_rank(int root, double bound_seconds, const char* what) {
    (void)root;
    (void)bound_seconds;
    (void)what;
    barrier();
  }

  // Typed conveniences over the raw calls.
  template <typename T>
  void allreduce(std::vector<T>& values, ReduceOp op) {
    allreduce(values.data(), values.size(), dtype_of<T>(), op);
  }
  template <typename T>
  T allreduce_value(T value, ReduceOp op) {
    allreduce(&value, 1, dtype_of<T>(), op);
    return value;
  }
  template <typename T>
  std::vector<T> allgather_value(T value) {
    std::vector<T> out(static_cast<std::size_t>(size()));
    allgather(&value, out.data(), 1, dtype_of<T>());
    return out;
  }
  // Every rank's vector, concatenated in rank order.
  template <typename T>
  std::vector<T> allgatherv(const std::vector<T>& local) {
    auto counts64 = allgather_value<std::uint64_t>(local.size());
    std::vector<std::size_t> counts(counts64.begin(), counts64.end());
    std::size_t total = 0;
    for (auto c : counts) total += c;
    std::vector<T> out(total);
    allgatherv(local.data(), local.size(), out.data(), counts, dtype_of<T>());
    return out;
  }
  // Broadcasts a string from root to every rank.
  std::string broadcast_string(const std::string& value, int root);

 protected:
  // The backends' collectives, as the public calls above describe them.
  virtual void do_allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op) = 0;
  virtual void do_allgather(const void* send, void* recv, std::size_t count, DType dtype) = 0;
  virtual void do_allgatherv(const void* send, std::size_t send_count, void* recv,
                             const std::vector<std::size_t>& recv_counts, DType dtype) = 0;
  virtual void do_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                                 ReduceOp op) = 0;
  // Started collectives; the defaults run the blocking call and return a
  // finished request (the one-rank and loopback communicators).
  virtual std::unique_ptr<CollectiveRequest> do_start_allgather(const void* send, void* recv, std::size_t count,
                                                                DType dtype);
  virtual std::unique_ptr<CollectiveRequest> do_start_reduce_scatter(const void* send, void* recv,
                                                                     std::size_t recv_count, DType dtype, ReduceOp op);
  virtual void do_broadcast(void* buffer, std::size_t count, DType dtype, int root) = 0;
  virtual void do_alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                            const std::vector<std::size_t>& recv_counts, DType dtype) = 0;
};

// A one-rank communicator: every collective is the identity (or a copy).
std::unique_ptr<Communicator> make_self_communicator();

// Rank `rank` of `size` with no peers: collectives keep the shapes of a real
// `size`-rank job (gathers return every block, reduce-scatters this rank's),
// with this rank's data standing in for the others'. One process then holds
// and computes exactly one rank's share, for measuring a rank's memory
// (bench/memory) without the other ranks. Its results are not a real job's.
std::unique_ptr<Communicator> make_loopback_communicator(int rank, int size);

}  // namespace metareuse
