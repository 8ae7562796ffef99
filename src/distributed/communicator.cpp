#include "metareuse/distributed/communicator.h"

#include <algorithm>
#include <cstring>

#include "metareuse/core/error.h"

namespace metareuse {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return 1;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kUInt64: return 8;
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kFloat16: return 2;
    case DType::kBFloat16: return 2;
  }
  return 1;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt64: return "uint64";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "?";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

std::string Communicator::broadcast_string(const std::string& value, int root) {
  std::uint64_t length = value.size();
  broadcast(&length, 1, DType::kUInt64, root);
  std::string out = rank() == root ? value : std::string(length, '\0');
  broadcast(out.data(), length, DType::kUInt8, root);
  return out;
}

namespace {

// Rank 0 of 1: reductions are the identity, gathers and scatters are copies.
class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend_name() const override { return "self"; }

  void allreduce(void*, std::size_t, DType, ReduceOp) override {}
  void allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    copy(send, recv, count, dtype);
  }
  void allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                  DType dtype) override {
    MR_CHECK(recv_counts.size() == 1 && recv_counts[0] == send_count,
             "allgatherv: one rank, so recv_counts must be {{{}}}", send_count);
    copy(send, recv, send_count, dtype);
  }
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp) override {
    copy(send, recv, recv_count, dtype);
  }
  void broadcast(void*, std::size_t, DType, int root) override {
    MR_CHECK(root == 0, "broadcast: root {} is not a rank of 1", root);
  }
  void alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                 const std::vector<std::size_t>& recv_counts, DType dtype) override {
    MR_CHECK(send_counts.size() == 1 && recv_counts.size() == 1 && send_counts[0] == recv_counts[0],
             "alltoallv: one rank, so send and receive counts must match");
    copy(send, recv, send_counts[0], dtype);
  }
  void barrier() override {}

 private:
  static void copy(const void* send, void* recv, std::size_t count, DType dtype) {
    if (count > 0 && send != recv) std::memmove(recv, send, count * dtype_size(dtype));
  }
};

// Rank r of N with no peers: every buffer has the size it has in a real
// N-rank job, and this rank's own block is where it would be, but nothing
// arrives from elsewhere (the other ranks' blocks repeat this rank's). For
// measuring one rank's memory and work in one process, never for results.
class LoopbackCommunicator final : public Communicator {
 public:
  LoopbackCommunicator(int rank, int size) : rank_(rank), size_(size) {
    MR_CHECK(size >= 1 && rank >= 0 && rank < size, "loopback communicator: rank {} of {} is not a rank", rank, size);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "loopback"; }

  void allreduce(void*, std::size_t, DType, ReduceOp) override {}
  void allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    const std::size_t bytes = count * dtype_size(dtype);
    for (int r = 0; r < size_; ++r) std::memmove(static_cast<char*>(recv) + r * bytes, send, bytes);
  }
  void allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                  DType dtype) override {
    MR_CHECK(recv_counts.size() == static_cast<std::size_t>(size_) && recv_counts[rank_] == send_count,
             "allgatherv: recv_counts must have {} entries, this rank's equal to {}", size_, send_count);
    std::size_t offset = 0;
    for (int r = 0; r < rank_; ++r) offset += recv_counts[r];
    std::memmove(static_cast<char*>(recv) + offset * dtype_size(dtype), send, send_count * dtype_size(dtype));
  }
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp) override {
    const std::size_t bytes = recv_count * dtype_size(dtype);
    std::memmove(recv, static_cast<const char*>(send) + rank_ * bytes, bytes);
  }
  void broadcast(void*, std::size_t, DType, int root) override {
    MR_CHECK(root >= 0 && root < size_, "broadcast: root {} is not a rank of {}", root, size_);
  }
  void alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                 const std::vector<std::size_t>& recv_counts, DType dtype) override {
    MR_CHECK(send_counts.size() == static_cast<std::size_t>(size_) && recv_counts.size() == send_counts.size(),
             "alltoallv: counts must have {} entries", size_);
    std::size_t send_offset = 0, recv_offset = 0;
    for (int r = 0; r < rank_; ++r) {
      send_offset += send_counts[r];
      recv_offset += recv_counts[r];
    }
    const std::size_t count = std::min(send_counts[rank_], recv_counts[rank_]);
    std::memmove(static_cast<char*>(recv) + recv_offset * dtype_size(dtype),
                 static_cast<const char*>(send) + send_offset * dtype_size(dtype), count * dtype_size(dtype));
  }
  void barrier() override {}

 private:
  int rank_, size_;
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

std::unique_ptr<Communicator> make_loopback_communicator(int rank, int size) {
  return std::make_unique<LoopbackCommunicator>(rank, size);
}

}  // namespace metareuse
