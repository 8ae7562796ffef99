#include "mpi_communicator.h"

#include <fmt/format.h>

#include <climits>
#include <cstring>
#include <numeric>

#include "metareuse/core/error.h"
#include "metareuse/distributed/runtime.h"
#include "mpi_check.h"
#include "poll.h"

namespace metareuse {
namespace distributed_detail {

[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(code, text, &length);
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw Error(fmt::format("rank {}: MPI call {} failed at {}:{}: {}", rank, call, file, line, text));
}

}  // namespace distributed_detail

namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return MPI_UINT8_T;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kUInt64: return MPI_UINT64_T;
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
    // Half types travel as 16-bit words; MPI has no arithmetic for them.
    case DType::kFloat16:
    case DType::kBFloat16: return MPI_UINT16_T;
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

void require_reducible(DType dtype, const char* what) {
  if (dtype == DType::kFloat16 || dtype == DType::kBFloat16) {
    throw Error(fmt::format("{}: the MPI backend cannot reduce {} values; reduce CPU tensors in fp32",
                            what, dtype_name(dtype)));
  }
}

int to_int(std::size_t value, const char* what) {
  if (value > static_cast<std::size_t>(INT_MAX)) {
    throw Error(fmt::format("{}: {} elements exceed MPI's int count limit ({})", what, value, INT_MAX));
  }
  return static_cast<int>(value);
}

// Counts and displacements for the v-collectives, checked against INT_MAX.
void counts_and_displacements(const std::vector<std::size_t>& counts, const char* what, std::vector<int>& out_counts,
                              std::vector<int>& out_displacements) {
  out_counts.resize(counts.size());
  out_displacements.resize(counts.size());
  std::size_t offset = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    out_counts[r] = to_int(counts[r], what);
    out_displacements[r] = to_int(offset, what);
    offset += counts[r];
  }
}

// A non-blocking collective in flight. Its wait is watched like a blocking
// collective (CollectiveScope): the watchdog's clock starts when the rank
// begins to wait, not at the start, since a collective left in flight while
// the rank computes is not late.
class MpiRequest final : public CollectiveRequest {
 public:
  MpiRequest(MPI_Request request, const char* operation) : request_(request), operation_(operation) {}

  bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    MR_CHECK_MPI(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }

  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    CollectiveScope watch(operation_);
    MR_CHECK_MPI(MPI_Wait(&request_, MPI_STATUS_IGNORE));
  }

 private:
  MPI_Request request_;
  const char* operation_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm parent) {
    MR_CHECK_MPI(MPI_Comm_dup(parent, &comm_));
    MR_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MR_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
    MR_CHECK_MPI(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }

  void do_allreduce(void* buffer, std::size_t count, DType dtype, ReduceOp op) override {
    CollectiveScope watch("allreduce");
    require_reducible(dtype, "allreduce");
    // Chunked so counts above INT_MAX still work.
    auto* bytes = static_cast<char*>(buffer);
    const std::size_t chunk = INT_MAX / 2;
    for (std::size_t done = 0; done < count; done += chunk) {
      int n = static_cast<int>(std::min(chunk, count - done));
      MR_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, bytes + done * dtype_size(dtype), n, mpi_type(dtype), mpi_op(op),
                                 comm_));
    }
  }

  void do_allgather(const void* send, void* recv, std::size_t count, DType dtype) override {
    CollectiveScope watch("allgather");
    int n = to_int(count, "allgather");
    // MPI forbids aliased buffers; a send buffer that is this rank's own block
    // of the receive buffer is MPI's in-place form.
    const bool in_place = send == static_cast<const char*>(recv) + rank_ * count * dtype_size(dtype);
    MR_CHECK_MPI(MPI_Allgather(in_place ? MPI_IN_PLACE : send, n, mpi_type(dtype), recv, n, mpi_type(dtype), comm_));
  }

  void do_allgatherv(const void* send, std::size_t send_count, void* recv, const std::vector<std::size_t>& recv_counts,
                     DType dtype) override {
    CollectiveScope watch("allgatherv");
    MR_CHECK(recv_counts.size() == static_cast<std::size_t>(size_), "allgatherv: {} counts for {} ranks",
             recv_counts.size(), size_);
    MR_CHECK(recv_counts[rank_] == send_count, "allgatherv: rank {} sends {} but recv_counts says {}", rank_,
             send_count, recv_counts[rank_]);
    std::vector<int> counts, displacements;
    counts_and_displacements(recv_counts, "allgatherv", counts, displacements);
    MR_CHECK_MPI(MPI_Allgatherv(send, to_int(send_count, "allgatherv"), mpi_type(dtype), recv, counts.data(),
                                displacements.data(), mpi_type(dtype), comm_));
  }

  // Through the non-blocking call, waited at once: Open MPI's blocking and
  // non-blocking reduce-scatters sum in different orders at 3 ranks and more,
  // and a gradient must not depend on when its reduce-scatter was waited for.
  void do_reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype, ReduceOp op) override {
    CollectiveScope watch("reduce_scatter");
    MPI_Request request = start_reduce_scatter_request(send, recv, recv_count, dtype, op);
    MR_CHECK_MPI(MPI_Wait(&request, MPI_STATUS_IGNORE));
  }

  std::unique_ptr<CollectiveRequest> do_start_allgather(const void* send, void* recv, std::size_t count,
                                                        DType dtype) override {
    const int n = to_int(count, "allgather");
    const bool in_place = send == static_cast<const char*>(recv) + rank_ * count * dtype_size(dtype);  // as above
    MPI_Request request = MPI_REQUEST_NULL;
    MR_CHECK_MPI(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, n, mpi_type(dtype), recv, n, mpi_type(dtype), comm_,
                                &request));
    return std::make_unique<MpiRequest>(request, "allgather (started earlier)");
  }

  std::unique_ptr<CollectiveRequest> do_start_reduce_scatter(const void* send, void* recv, std::size_t recv_count,
                                                             DType dtype, ReduceOp op) override {
    return std::make_unique<MpiRequest>(start_reduce_scatter_request(send, recv, recv_count, dtype, op),
                                        "reduce_scatter (started earlier)");
  }

  void do_broadcast(void* buffer, std::size_t count, DType dtype, int root) override {
    CollectiveScope watch("broadcast");
    MR_CHECK(root >= 0 && root < size_, "broadcast: root {} is not a rank of {}", root, size_);
    auto* bytes = static_cast<char*>(buffer);
    const std::size_t chunk = INT_MAX / 2;
    for (std::size_t done = 0; done < count; done += chunk) {
      int n = static_cast<int>(std::min(chunk, count - done));
      MR_CHECK_MPI(MPI_Bcast(bytes + done * dtype_size(dtype), n, mpi_type(dtype), root, comm_));
    }
  }

  void do_alltoallv(const void* send, const std::vector<std::size_t>& send_counts, void* recv,
                    const std::vector<std::size_t>& recv_counts, DType dtype) override {
    CollectiveScope watch("alltoallv");
    MR_CHECK(send_counts.size() == static_cast<std::size_t>(size_) &&
                 recv_counts.size() == static_cast<std::size_t>(size_),
             "alltoallv: counts must have one entry per rank ({})", size_);
    std::vector<int> scounts, sdispls, rcounts, rdispls;
    counts_and_displacements(send_counts, "alltoallv", scounts, sdispls);
    counts_and_displacements(recv_counts, "alltoallv", rcounts, rdispls);
    MR_CHECK_MPI(MPI_Alltoallv(send, scounts.data(), sdispls.data(), mpi_type(dtype), recv, rcounts.data(),
                               rdispls.data(), mpi_type(dtype), comm_));
  }

  void barrier() override {
    CollectiveScope watch("barrier");
    MR_CHECK_MPI(MPI_Barrier(comm_));
  }

  // No CollectiveScope: a non-blocking barrier polled until the root joins.
  void wait_for_rank(int root, double bound_seconds, const char* what) override {
    MR_CHECK(root >= 0 && root < size_, "wait_for_rank: root {} is not a rank of {}", root, size_);
    MPI_Request request = MPI_REQUEST_NULL;
    MR_CHECK_MPI(MPI_Ibarrier(comm_, &request));
    const distributed_detail::Poll outcome = distributed_detail::poll_until(
        [&]() {
          int done = 0;
          MR_CHECK_MPI(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
          return done ? distributed_detail::Poll::kDone : distributed_detail::Poll::kPending;
        },
        bound_seconds);
    if (outcome != distributed_detail::Poll::kDone) {
      // The request stays active (freeing a non-blocking collective's request
      // is erroneous in MPI); the caller ends the job.
      throw Error(fmt::format("rank {}: waited {:.0f} s for rank {} ({}) without it finishing; ending the job", rank_,
                              bound_seconds, root, what));
    }
  }

 private:
  MPI_Request start_reduce_scatter_request(const void* send, void* recv, std::size_t recv_count, DType dtype,
                                           ReduceOp op) {
    require_reducible(dtype, "reduce_scatter");
    MPI_Request request = MPI_REQUEST_NULL;
    // send == recv: the full buffer reduced in place, this rank's block left at its start (MPI's in-place form).
    MR_CHECK_MPI(MPI_Ireduce_scatter_block(send == recv ? MPI_IN_PLACE : send, recv,
                                           to_int(recv_count, "reduce_scatter"), mpi_type(dtype), mpi_op(op), comm_,
                                           &request));
    return request;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> distributed_detail::make_mpi_communicator(MPI_Comm parent) {
  return std::make_unique<MpiCommunicator>(parent);
}

}  // namespace metareuse
