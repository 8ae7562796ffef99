#include "metareuse/distributed/communicator.h"

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

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

}  // namespace metareuse
