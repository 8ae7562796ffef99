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

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;

  // In place: buffer[i] = op over ranks of buffer[i].
  virtual void allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op) = 0;
  // recv holds size() * count elements; rank r's block lands at r * count.
  virtual void allgather(const void* send, void* recv, std::size_t count, DType dtype) = 0;
  // Uneven allgather: rank r contributes recv_counts[r] elements (send_count
  // must equal recv_counts[rank()]); they land contiguously in rank order.
  virtual void allgatherv(const void* send, std::size_t send_count, void* recv,
                          const std::vector<std::size_t>& recv_counts, DType dtype) = 0;
  // send holds size() * recv_count elements; recv gets block rank() of the
  // element-wise reduction over ranks.
  virtual void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                              ReduceOp op) = 0;
  virtual void broadcast(void* buffer, std::size_t count, DType dtype, int root) = 0;
  // send_counts[r] elements go to rank r (blocks contiguous in rank order);
  // recv_counts[r] elements arrive from rank r.
  virtual void alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                         const std::vector<std::size_t>& recv_counts, DType dtype) = 0;
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
