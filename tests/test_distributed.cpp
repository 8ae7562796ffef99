// Every collective of the communicator, on uneven sizes, at whatever rank
// count this binary was started with (ctest runs it at 1, 2 and 3 ranks).
#include "torch_catch.h"

#include <chrono>
#include <numeric>
#include <thread>

#include "metareuse/core/error.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/distributed/tensor_comm.h"
#include "poll.h"  // src/distributed: the bounded poll
#include "test_support.h"

using namespace metareuse;

namespace {
Communicator& world() { return test::runtime().world(); }
// Rank r's value at index i: distinct per rank and index.
double value_of(int rank, std::size_t i) { return 1000.0 * rank + static_cast<double>(i) + 0.25; }
}  // namespace

TEST_CASE("runtime layout is consistent", "[dist]") {
  const auto& layout = test::runtime().layout();
  CHECK(layout.world_size == world().size());
  CHECK(layout.rank == world().rank());
  CHECK(layout.local_rank >= 0);
  CHECK(layout.local_rank < layout.local_size);
  // All ranks of these tests run on this machine.
  CHECK(layout.local_size == layout.world_size);
  auto local_ranks = world().allgather_value<std::int32_t>(layout.local_rank);
  std::sort(local_ranks.begin(), local_ranks.end());
  for (int r = 0; r < world().size(); ++r) CHECK(local_ranks[r] == r);
}

TEST_CASE("allreduce sum, max and min over uneven lengths", "[dist]") {
  const int n = world().size(), me = world().rank();
  for (std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{1001}}) {
    std::vector<double> sum(count), max(count), min(count);
    for (std::size_t i = 0; i < count; ++i) sum[i] = max[i] = min[i] = value_of(me, i);
    world().allreduce(sum, ReduceOp::kSum);
    world().allreduce(max, ReduceOp::kMax);
    world().allreduce(min, ReduceOp::kMin);
    for (std::size_t i = 0; i < count; ++i) {
      double expected_sum = 0;
      for (int r = 0; r < n; ++r) expected_sum += value_of(r, i);
      CHECK(sum[i] == expected_sum);
      CHECK(max[i] == value_of(n - 1, i));
      CHECK(min[i] == value_of(0, i));
    }
  }
  CHECK(world().allreduce_value<std::int64_t>(me + 1, ReduceOp::kSum) == static_cast<std::int64_t>(n) * (n + 1) / 2);
  CHECK(world().allreduce_value<std::uint64_t>(me, ReduceOp::kMax) == static_cast<std::uint64_t>(n - 1));
}

TEST_CASE("allgather and allgatherv with a different length on every rank", "[dist]") {
  const int n = world().size(), me = world().rank();
  std::vector<float> block(5);
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<float>(value_of(me, i));
  std::vector<float> gathered(5 * n);
  world().allgather(block.data(), gathered.data(), block.size(), DType::kFloat32);
  for (int r = 0; r < n; ++r)
    for (std::size_t i = 0; i < 5; ++i) CHECK(gathered[r * 5 + i] == static_cast<float>(value_of(r, i)));

  // Rank r contributes 2r+1 elements; rank 0 of a 3-rank job one, rank 2 five.
  std::vector<std::int64_t> mine(2 * me + 1);
  std::iota(mine.begin(), mine.end(), 100 * me);
  auto all = world().allgatherv(mine);
  std::size_t offset = 0;
  for (int r = 0; r < n; ++r) {
    for (int i = 0; i < 2 * r + 1; ++i) CHECK(all[offset + i] == 100 * r + i);
    offset += 2 * r + 1;
  }
  CHECK(offset == all.size());

  // An empty contribution from one rank is fine.
  std::vector<std::int64_t> maybe_empty(me == 0 ? 0 : 3, me);
  auto gathered_empty = world().allgatherv(maybe_empty);
  CHECK(gathered_empty.size() == static_cast<std::size_t>(3 * (n - 1)));
}

TEST_CASE("reduce_scatter gives each rank its block of the sum", "[dist]") {
  const int n = world().size(), me = world().rank();
  const std::size_t block = 3;
  std::vector<double> full(block * n);
  for (std::size_t i = 0; i < full.size(); ++i) full[i] = value_of(me, i);
  std::vector<double> mine(block);
  world().reduce_scatter(full.data(), mine.data(), block, DType::kFloat64, ReduceOp::kSum);
  for (std::size_t i = 0; i < block; ++i) {
    double expected = 0;
    for (int r = 0; r < n; ++r) expected += value_of(r, me * block + i);
    CHECK(mine[i] == expected);
  }
}

// A started collective may be waited for late (the sharding engine overlaps
// them with compute); its result must not depend on that. At 300000 floats per
// block Open MPI's own blocking and non-blocking reduce-scatters sum in
// different orders at 3 ranks, so the blocking one must be the same algorithm.
TEST_CASE("started collectives give the blocking ones' bits and bytes", "[dist][overlap]") {
  const int n = world().size(), me = world().rank();
  for (const std::size_t block : {std::size_t{5}, std::size_t{300000}}) {
    INFO(block << " elements per rank at " << n << " ranks");
    torch::Generator generator = at::detail::createCPUGenerator(100 + me);
    torch::Tensor full = torch::randn({static_cast<int64_t>(block) * n}, generator) * 1e-3;  // (n * block,)
    torch::Tensor shard = full.narrow(0, 0, static_cast<int64_t>(block)).contiguous();         // (block,)

    const CollectiveTraffic before_blocking = collective_traffic();
    torch::Tensor reduced = reduce_scatter(world(), full, ReduceOp::kSum);
    torch::Tensor gathered = allgather(world(), shard);
    const CollectiveTraffic blocking = collective_traffic().since(before_blocking);

    const CollectiveTraffic before_started = collective_traffic();
    PendingTensor started_reduce = start_reduce_scatter(world(), full, ReduceOp::kSum);
    PendingTensor started_gather = start_allgather(world(), shard);
    CHECK(started_reduce.active());
    // Some compute while both are in flight, then a poll until done.
    torch::Tensor busy = torch::mm(torch::ones({64, 64}), torch::ones({64, 64}));
    CHECK(busy[0][0].item<float>() == 64.0f);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!(started_reduce.test() && started_gather.test()) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    torch::Tensor late_gathered = started_gather.wait();
    torch::Tensor late_reduced = started_reduce.wait();
    const CollectiveTraffic started = collective_traffic().since(before_started);

    CHECK_FALSE(started_reduce.active());
    CHECK(torch::equal(reduced, late_reduced));
    CHECK(torch::equal(gathered, late_gathered));
    CHECK(torch::equal(late_gathered.narrow(0, static_cast<int64_t>(block) * me, static_cast<int64_t>(block)), shard));
    CHECK(started.allgather.calls == 1);
    CHECK(started.reduce_scatter.calls == 1);
    CHECK(started.allgather.sent == blocking.allgather.sent);
    CHECK(started.allgather.received == blocking.allgather.received);
    CHECK(started.reduce_scatter.sent == blocking.reduce_scatter.sent);
    CHECK(started.reduce_scatter.received == blocking.reduce_scatter.received);
    CHECK(started.wait_seconds > 0.0);  // the two waits, timed
  }
  CHECK_THROWS_WITH(PendingTensor().wait(), Catch::Matchers::Contains("output was taken already"));
}

TEST_CASE("broadcast from every root, including strings", "[dist]") {
  const int n = world().size(), me = world().rank();
  for (int root = 0; root < n; ++root) {
    std::vector<std::int32_t> data(11, me == root ? 40 + root : -1);
    world().broadcast(data.data(), data.size(), DType::kInt32, root);
    for (auto v : data) CHECK(v == 40 + root);
    std::string text = world().broadcast_string(me == root ? std::string(root + 2, 'x') : "", root);
    CHECK(text == std::string(root + 2, 'x'));
  }
  std::vector<int> one(1);
  CHECK_THROWS_AS(world().broadcast(one.data(), 1, DType::kInt32, n), Error);
}

TEST_CASE("alltoallv with uneven (and zero) counts", "[dist]") {
  const int n = world().size(), me = world().rank();
  // Rank s sends (s + d) % 3 elements to rank d, each encoding (s, d, i).
  std::vector<std::size_t> send_counts(n), recv_counts(n);
  std::vector<std::int64_t> send;
  for (int d = 0; d < n; ++d) {
    send_counts[d] = static_cast<std::size_t>((me + d) % 3);
    for (std::size_t i = 0; i < send_counts[d]; ++i) send.push_back(me * 10000 + d * 100 + static_cast<int>(i));
  }
  for (int s = 0; s < n; ++s) recv_counts[s] = static_cast<std::size_t>((s + me) % 3);
  std::size_t total = std::accumulate(recv_counts.begin(), recv_counts.end(), std::size_t{0});
  std::vector<std::int64_t> recv(total, -1);
  world().alltoallv(send.data(), send_counts, recv.data(), recv_counts, DType::kInt64);
  std::size_t offset = 0;
  for (int s = 0; s < n; ++s) {
    for (std::size_t i = 0; i < recv_counts[s]; ++i) CHECK(recv[offset + i] == s * 10000 + me * 100 + static_cast<int>(i));
    offset += recv_counts[s];
  }
}

TEST_CASE("barrier completes on every rank", "[dist]") {
  world().barrier();
  CHECK(world().allreduce_value<std::int32_t>(1, ReduceOp::kSum) == world().size());
}

TEST_CASE("tensor collectives through the communicator", "[dist][torch]") {
  const int n = world().size(), me = world().rank();
  auto t = torch::arange(13, torch::kFloat32) + me;
  allreduce(world(), t, ReduceOp::kSum);
  auto expected = torch::arange(13, torch::kFloat32) * n + static_cast<float>(n * (n - 1) / 2);
  CHECK(torch::equal(t, expected));

  auto shard = torch::full({4}, static_cast<float>(me));
  auto full = allgather(world(), shard);
  REQUIRE(full.numel() == 4 * n);
  for (int r = 0; r < n; ++r) CHECK(full.slice(0, 4 * r, 4 * r + 4).eq(static_cast<float>(r)).all().item<bool>());

  auto grads = torch::ones({6 * n}, torch::kFloat64) * (me + 1);
  auto mine = reduce_scatter(world(), grads, ReduceOp::kSum);
  CHECK(mine.numel() == 6);
  CHECK(mine.eq(static_cast<double>(n * (n + 1) / 2)).all().item<bool>());

  auto b = me == 0 ? torch::tensor({7, 8, 9}, torch::kInt64) : torch::zeros({3}, torch::kInt64);
  broadcast(world(), b, 0);
  CHECK(torch::equal(b, torch::tensor({7, 8, 9}, torch::kInt64)));

  auto not_contiguous = torch::ones({4, 4}).t();
  CHECK_THROWS_WITH(allreduce(world(), not_contiguous, ReduceOp::kSum), Catch::Matchers::Contains("contiguous"));
  auto uneven = torch::ones({6 * n + 1});
  if (n > 1) CHECK_THROWS_WITH(reduce_scatter(world(), uneven, ReduceOp::kSum), Catch::Matchers::Contains("divisible"));
}

TEST_CASE("each collective counts its ring's bytes, sent and received, on this rank", "[dist][traffic]") {
  const std::uint64_t n = static_cast<std::uint64_t>(world().size());
  const std::uint64_t me = static_cast<std::uint64_t>(world().rank());
  auto counted = [](auto&& collective) {
    const CollectiveTraffic before = collective_traffic();
    collective();
    return collective_traffic().since(before);
  };

  // All-reduce: a ring over n chunks of ceil(count / n) elements, twice round.
  std::vector<float> five(5, 1.0f);
  CollectiveTraffic t = counted([&] { world().allreduce(five, ReduceOp::kSum); });
  const std::uint64_t chunk = (5 + n - 1) / n;
  CHECK(t.allreduce.calls == 1);
  CHECK(t.allreduce.sent == 2 * (n - 1) * chunk * 4);
  CHECK(t.allreduce.received == t.allreduce.sent);
  CHECK(t.sent() == t.allreduce.sent);

  // All-gather: every block but this rank's comes in, every block but the last one passed on goes out.
  std::vector<std::int32_t> seven(7, 3), gathered(7 * n);
  t = counted([&] { world().allgather(seven.data(), gathered.data(), 7, DType::kInt32); });
  CHECK(t.allgather.sent == (n - 1) * 7 * 4);
  CHECK(t.allgather.received == (n - 1) * 7 * 4);

  // Allgatherv with rank r holding r + 1 elements: the ring receives all but
  // its own block and sends all but the next rank's.
  std::vector<std::uint64_t> mine(me + 1, me);
  t = counted([&] { world().allgatherv(mine); });
  const std::uint64_t total = n * (n + 1) / 2;
  CHECK(t.allgather.calls == 2);  // the counts' allgather, then the values'
  CHECK(t.allgather.received == (n - 1) * 8 + (total - (me + 1)) * 8);
  CHECK(t.allgather.sent == (n - 1) * 8 + (total - ((me + 1) % n + 1)) * 8);

  std::vector<double> full(3 * n, 1.0), block(3);
  t = counted([&] { world().reduce_scatter(full.data(), block.data(), 3, DType::kFloat64, ReduceOp::kSum); });
  CHECK(t.reduce_scatter.sent == (n - 1) * 3 * 8);
  CHECK(t.reduce_scatter.received == (n - 1) * 3 * 8);

  // Broadcast down the chain root, root + 1, ...: the root receives nothing, the chain's end sends nothing.
  const int root = world().size() - 1;
  std::vector<std::uint8_t> ten(10, 1);
  t = counted([&] { world().broadcast(ten.data(), ten.size(), DType::kUInt8, root); });
  const bool is_root = me == static_cast<std::uint64_t>(root);
  const bool is_last = me == (static_cast<std::uint64_t>(root) + n - 1) % n;
  CHECK(t.broadcast.received == (is_root ? 0u : 10u));
  CHECK(t.broadcast.sent == (is_last ? 0u : 10u));

  // All-to-all: rank s gets s + 1 elements from every rank; what stays here is not counted.
  std::vector<std::size_t> send_counts(n), recv_counts(n, me + 1);
  std::uint64_t others = 0;
  for (std::uint64_t s = 0; s < n; ++s) {
    send_counts[s] = s + 1;
    if (s != me) others += s + 1;
  }
  std::vector<std::int64_t> out(total, 1), in(n * (me + 1));
  t = counted([&] { world().alltoallv(out.data(), send_counts, in.data(), recv_counts, DType::kInt64); });
  CHECK(t.alltoall.sent == others * 8);
  CHECK(t.alltoall.received == (n - 1) * (me + 1) * 8);

  t = counted([&] { world().barrier(); });
  CHECK(t.sent() == 0);
  CHECK(t.received() == 0);

  // Tensor collectives go through the same counts.
  t = counted([&] { allgather(world(), torch::ones({4}, torch::kFloat16)); });
  CHECK(t.allgather.sent == (n - 1) * 4 * 2);
}

TEST_CASE("half-precision reductions are refused with a clear message on MPI", "[dist]") {
  if (world().backend_name() != "mpi") return;  // the self backend reduces nothing
  std::vector<std::uint16_t> halves(4, 0x3c00);
  CHECK_THROWS_WITH(world().allreduce(halves.data(), halves.size(), DType::kFloat16, ReduceOp::kSum),
                    Catch::Matchers::Contains("float16") && Catch::Matchers::Contains("fp32"));
  // Moving half data is fine.
  std::vector<std::uint16_t> gathered(4 * world().size());
  world().allgather(halves.data(), gathered.data(), 4, DType::kFloat16);
  for (auto v : gathered) CHECK(v == 0x3c00);
}

// The bounded poll behind every NCCL wait (init, calls left in progress, a
// collective's done event), which cannot run here without a GPU: its bound and
// its outcomes, with fake states.
TEST_CASE("the NCCL poll loop returns on done, on failure and at its bound", "[dist]") {
  using distributed_detail::Poll;
  using distributed_detail::poll_until;
  int calls = 0;
  CHECK(poll_until([&]() { return ++calls < 5 ? Poll::kPending : Poll::kDone; }, 10.0) == Poll::kDone);
  CHECK(calls == 5);
  calls = 0;
  CHECK(poll_until([&]() { return ++calls < 3 ? Poll::kPending : Poll::kFailed; }, 10.0) == Poll::kFailed);
  CHECK(calls == 3);
  const auto start = std::chrono::steady_clock::now();
  CHECK(poll_until([]() { return Poll::kPending; }, 0.3) == Poll::kPending);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(waited >= 0.3);
  CHECK(waited < 5.0);  // the backoff tops out at 10 ms, so it stops soon after the bound (5 s: a loaded CI machine)
}

// The writer-aware wait: rank 0 works 1.5 s alone while the others wait
// outside the collective watchdog; all leave together.
TEST_CASE("wait_for_rank waits for the root's slow local work", "[dist]") {
  // Ranks leave the previous case at different times; start the clocks together.
  world().barrier();
  const auto start = std::chrono::steady_clock::now();
  if (world().rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  world().wait_for_rank(0, 60.0, "the test's slow root");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // A barrier's exit is not simultaneous on every rank: allow a loaded machine 0.5 s of skew.
  CHECK(waited >= 1.0);
}
