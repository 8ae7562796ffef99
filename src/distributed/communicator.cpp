#include "metareuse/distributed/communicator.h"

#include <algorithm>
#include <chrono>
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

namespace {

// The process's running totals (collective_traffic()).
CollectiveTraffic process_traffic;

void add_traffic(CollectiveBytes& kind, std::uint64_t sent, std::uint64_t received) {
  ++kind.calls;
  kind.sent += sent;
  kind.received += received;
}

CollectiveBytes difference(const CollectiveBytes& now, const CollectiveBytes& earlier) {
  return {now.calls - earlier.calls, now.sent - earlier.sent, now.received - earlier.received};
}

// Adds the time from its construction to its end to the process's wait_seconds.
class WaitClock {
 public:
  WaitClock() : start_(std::chrono::steady_clock::now()) {}
  ~WaitClock() {
    process_traffic.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  WaitClock(const WaitClock&) = delete;
  WaitClock& operator=(const WaitClock&) = delete;

 private:
  std::chrono::steady_clock::time_point start_;
};

// A request that finished when it was made (a blocking call stood in for it).
class FinishedRequest final : public CollectiveRequest {
 public:
  bool test() override { return true; }
  void wait() override {}
};

std::uint64_t sum(const std::vector<std::size_t>& counts) {
  std::uint64_t total = 0;
  for (std::size_t c : counts) total += c;
  return total;
}

}  // namespace

std::uint64_t CollectiveTraffic::sent() const {
  return allreduce.sent + allgather.sent + reduce_scatter.sent + broadcast.sent + alltoall.sent;
}

std::uint64_t CollectiveTraffic::received() const {
  return allreduce.received + allgather.received + reduce_scatter.received + broadcast.received + alltoall.received;
}

CollectiveTraffic CollectiveTraffic::since(const CollectiveTraffic& earlier) const {
  return {difference(allreduce, earlier.allreduce), difference(allgather, earlier.allgather),
          difference(reduce_scatter, earlier.reduce_scatter), difference(broadcast, earlier.broadcast),
          difference(alltoall, earlier.alltoall), wait_seconds - earlier.wait_seconds};
}

PendingCollective::PendingCollective(std::unique_ptr<CollectiveRequest> request) : request_(std::move(request)) {}

PendingCollective& PendingCollective::operator=(PendingCollective&& other) noexcept {
  if (this != &other) {
    abandon();
    request_ = std::move(other.request_);
  }
  return *this;
}

PendingCollective::~PendingCollective() { abandon(); }

bool PendingCollective::test() { return request_ == nullptr || request_->test(); }

void PendingCollective::wait() {
  if (request_ == nullptr) return;
  {
    WaitClock clock;
    request_->wait();
  }
  request_.reset();
}

void PendingCollective::abandon() {
  if (request_ == nullptr) return;
  // Still in flight (an exception unwound past it): MPI may yet write its
  // buffers and forbids freeing the request, so it stays until exit.
  static auto* abandoned = new std::vector<std::unique_ptr<CollectiveRequest>>();
  abandoned->push_back(std::move(request_));
}

CollectiveTraffic collective_traffic() { return process_traffic; }

// The byte rules of CollectiveBytes (communicator.h), one per kind, counted
// after the backend returns.
void Communicator::allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op) {
  {
    WaitClock clock;
    do_allreduce(buffer, count, dtype, op);
  }
  const std::uint64_t n = static_cast<std::uint64_t>(size());
  const std::uint64_t chunk = (count + n - 1) / n;  // elements per ring chunk, the buffer padded to n chunks
  const std::uint64_t bytes = 2 * (n - 1) * chunk * dtype_size(dtype);
  add_traffic(process_traffic.allreduce, bytes, bytes);
}

void Communicator::allgather(const void* send, void* recv, std::size_t count, DType dtype) {
  {
    WaitClock clock;
    do_allgather(send, recv, count, dtype);
  }
  const std::uint64_t bytes = static_cast<std::uint64_t>(size() - 1) * count * dtype_size(dtype);
  add_traffic(process_traffic.allgather, bytes, bytes);
}

void Communicator::allgatherv(const void* send, std::size_t send_count, void* recv,
                              const std::vector<std::size_t>& recv_counts, DType dtype) {
  {
    WaitClock clock;
    do_allgatherv(send, send_count, recv, recv_counts, dtype);
  }
  const std::uint64_t total = sum(recv_counts);
  const std::size_t next = static_cast<std::size_t>((rank() + 1) % size());
  const std::uint64_t element = dtype_size(dtype);
  add_traffic(process_traffic.allgather, (total - recv_counts.at(next)) * element, (total - send_count) * element);
}

void Communicator::reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp op) {
  {
    WaitClock clock;
    do_reduce_scatter(send, recv, recv_count, dtype, op);
  }
  const std::uint64_t bytes = static_cast<std::uint64_t>(size() - 1) * recv_count * dtype_size(dtype);
  add_traffic(process_traffic.reduce_scatter, bytes, bytes);
}

PendingCollective Communicator::start_allgather(const void* send, void* recv, std::size_t count, DType dtype) {
  PendingCollective pending(do_start_allgather(send, recv, count, dtype));
  const std::uint64_t bytes = static_cast<std::uint64_t>(size() - 1) * count * dtype_size(dtype);
  add_traffic(process_traffic.allgather, bytes, bytes);
  return pending;
}

PendingCollective Communicator::start_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                                                     ReduceOp op) {
  PendingCollective pending(do_start_reduce_scatter(send, recv, recv_count, dtype, op));
  const std::uint64_t bytes = static_cast<std::uint64_t>(size() - 1) * recv_count * dtype_size(dtype);
  add_traffic(process_traffic.reduce_scatter, bytes, bytes);
  return pending;
}

std::unique_ptr<CollectiveRequest> Communicator::do_start_allgather(const void* send, void* recv, std::size_t count,
                                                                    DType dtype) {
  WaitClock clock;
  do_allgather(send, recv, count, dtype);
  return std::make_unique<FinishedRequest>();
}

std::unique_ptr<CollectiveRequest> Communicator::do_start_reduce_scatter(const void* send, void* recv,
                                                                         std::size_t recv_count, DType dtype,
                                                                         ReduceOp op) {
  WaitClock clock;
  do_reduce_scatter(send, recv, recv_count, dtype, op);
  return std::make_unique<FinishedRequest>();
}

void Communicator::broadcast(void* buffer, std::size_t count, DType dtype, int root) {
  {
    WaitClock clock;
    do_broadcast(buffer, count, dtype, root);
  }
  const std::uint64_t bytes = static_cast<std::uint64_t>(count) * dtype_size(dtype);
  const int last = (root + size() - 1) % size();  // the chain's end, which forwards nothing
  add_traffic(process_traffic.broadcast, rank() == last ? 0 : bytes, rank() == root ? 0 : bytes);
}

void Communicator::alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                             const std::vector<std::size_t>& recv_counts, DType dtype) {
  {
    WaitClock clock;
    do_alltoallv(send, send_counts, recv, recv_counts, dtype);
  }
  const std::size_t own = static_cast<std::size_t>(rank());
  const std::uint64_t element = dtype_size(dtype);
  add_traffic(process_traffic.alltoall, (sum(send_counts) - send_counts.at(own)) * element,
                   (sum(recv_counts) - recv_counts.at(own)) * element);
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

  void do_allreduce(void*, std::size_t, DType, ReduceOp) override {}
  void do_allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    copy(send, recv, count, dtype);
  }
  void do_allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                     DType dtype) override {
    MR_CHECK(recv_counts.size() == 1 && recv_counts[0] == send_count,
             "allgatherv: one rank, so recv_counts must be {{{}}}", send_count);
    copy(send, recv, send_count, dtype);
  }
  void do_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp) override {
    copy(send, recv, recv_count, dtype);
  }
  void do_broadcast(void*, std::size_t, DType, int root) override {
    MR_CHECK(root == 0, "broadcast: root {} is not a rank of 1", root);
  }
  void do_alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
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

  void do_allreduce(void*, std::size_t, DType, ReduceOp) override {}
  void do_allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    const std::size_t bytes = count * dtype_size(dtype);
    for (int r = 0; r < size_; ++r) std::memmove(static_cast<char*>(recv) + r * bytes, send, bytes);
  }
  void do_allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                     DType dtype) override {
    MR_CHECK(recv_counts.size() == static_cast<std::size_t>(size_) && recv_counts[rank_] == send_count,
             "allgatherv: recv_counts must have {} entries, this rank's equal to {}", size_, send_count);
    std::size_t offset = 0;
    for (int r = 0; r < rank_; ++r) offset += recv_counts[r];
    std::memmove(static_cast<char*>(recv) + offset * dtype_size(dtype), send, send_count * dtype_size(dtype));
  }
  void do_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp) override {
    const std::size_t bytes = recv_count * dtype_size(dtype);
    std::memmove(recv, static_cast<const char*>(send) + rank_ * bytes, bytes);
  }
  void do_broadcast(void*, std::size_t, DType, int root) override {
    MR_CHECK(root >= 0 && root < size_, "broadcast: root {} is not a rank of {}", root, size_);
  }
  void do_alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
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
