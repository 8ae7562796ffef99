// A training step's collective traffic against docs/scaling.md's formula, at
// whatever rank count this binary was started with (ctest runs it at 1, 2, 3
// and 4 ranks): the bytes the communicator counts (communicator.h,
// CollectiveBytes) in one forward_backward and optimizer step must equal,
// exactly, the formula worked out here from the model's shape, the sharding's
// padding rule (fsdp.cpp: each unit padded to a multiple of the rank count)
// and the dtypes each collective carries (the embedding lookup gathers in
// fp32, the residual's precision; every other gather in the compute dtype;
// gradients reduce-scatter in fp32). Also: metrics.jsonl's step line keeps
// the traffic through MetricsLine's writer and reader.
#include "torch_catch.h"

#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/llama.h"
#include "metareuse/parallel/sharded_llama.h"
#include "metareuse/train/metrics.h"
#include "metareuse/train/optimizer.h"
#include "test_support.h"

using namespace metareuse;

namespace {

// One step's bytes per rank by docs/scaling.md: what each collective kind sends
// (and receives: the ring's counts are symmetric) and how many calls it makes.
struct Expected {
  std::uint64_t allgather_bytes = 0, allgather_calls = 0;
  std::uint64_t reduce_scatter_bytes = 0, reduce_scatter_calls = 0;
  std::uint64_t allreduce_bytes = 0, allreduce_calls = 0;
};

Expected step_formula(const LlamaConfig& config, std::int64_t n, std::int64_t micro_steps, bool recompute,
                      std::int64_t compute_bytes) {
  const std::int64_t C = config.hidden_size, V = config.vocab_size, F = config.intermediate_size;
  const std::int64_t L = config.num_hidden_layers;
  const std::int64_t q = config.num_attention_heads * config.head_dim;
  const std::int64_t kv = config.num_key_value_heads * config.head_dim;
  const std::int64_t embeddings = (config.tie_word_embeddings ? 1 : 2) * V * C;
  const std::int64_t layer = q * C + 2 * kv * C + C * q + 3 * F * C + 2 * C;
  const std::int64_t norm = C;
  REQUIRE(embeddings + L * layer + norm == parameter_count(config));  // the shape is read right

  auto shard = [n](std::int64_t numel) { return (numel + n - 1) / n; };  // the padding rule
  // A ring all-gather or reduce-scatter of a unit: (n - 1) shards each way.
  auto ring = [n, &shard](std::int64_t numel, std::int64_t element) {
    return static_cast<std::uint64_t>((n - 1) * shard(numel) * element);
  };
  const std::uint64_t passes = recompute ? 2 : 1;  // forward, and the backward re-gather
  Expected out;
  // The embedding unit runs twice (lookup, then the tied or untied head), each
  // run gathered and reduce-scattered on its own.
  const std::uint64_t gathered = ring(embeddings, 4) + ring(embeddings, compute_bytes) + L * ring(layer, compute_bytes) +
                                 ring(norm, compute_bytes);
  out.allgather_bytes = micro_steps * passes * gathered;
  out.allgather_calls = micro_steps * passes * static_cast<std::uint64_t>(L + 3);
  out.reduce_scatter_bytes = micro_steps * (2 * ring(embeddings, 4) + L * ring(layer, 4) + ring(norm, 4));
  out.reduce_scatter_calls = micro_steps * static_cast<std::uint64_t>(L + 3);
  // The loss, the overflow flag and the squared norm: one float64 each, a
  // ring of n chunks of ceil(1 / n) elements.
  out.allreduce_calls = 3;
  out.allreduce_bytes = 3 * static_cast<std::uint64_t>(2 * (n - 1) * 8);
  return out;
}

}  // namespace

TEST_CASE("a training step's traffic equals docs/scaling.md's formula", "[traffic]") {
  Communicator& comm = test::runtime().world();
  const std::int64_t n = comm.size();
  const std::int64_t rows = 6, micro_batch = 1;
  for (const bool tied : {true, false}) {
    for (const bool recompute : {true, false}) {
      // Overlap changes when collectives are waited for, never which ones run.
      for (const bool overlap : {true, false}) {
        LlamaConfig config = LlamaConfig::preset("debug-tiny");  // its units pad at 3 ranks
        config.tie_word_embeddings = tied;
        LlamaModel initial(config);
        initial.init_weights(5);
        std::map<std::string, torch::Tensor> parameters;
        for (const auto& [name, value] : initial.named_parameters()) parameters.emplace(name, value.detach());
        ShardedLlama model(config, comm, torch::kCPU, torch::kBFloat16);
        model.load_full(parameters);
        model.sharded().set_recompute(recompute);
        model.sharded().set_overlap(overlap);
        AdamW optimizer(model.sharded(), AdamWConfig{});
        LossScaler scaler(LossScalerConfig{});
        torch::Generator generator = at::detail::createCPUGenerator(17);
        torch::Tensor ids = torch::randint(0, config.vocab_size, {rows, 12}, generator, torch::kInt64);  // (B, T)
        const TrainBatch batch{ids, next_token_targets(ids), {}};
        int64_t adam_steps = 0;

        const CollectiveTraffic before = collective_traffic();
        model.forward_backward(batch, micro_batch, scaler.scale());
        optimizer.step(1e-3, 1.0, scaler, adam_steps);
        const CollectiveTraffic step = collective_traffic().since(before);

        // Every rank runs as many micro-steps as the rank with the most rows.
        const std::int64_t micro_steps = ((rows + n - 1) / n + micro_batch - 1) / micro_batch;
        const Expected expected = step_formula(config, n, micro_steps, recompute, 2);
        INFO(n << " ranks, tied " << tied << ", recompute " << recompute << ", overlap " << overlap << ", "
               << micro_steps << " micro-steps");
        CHECK(step.allgather.calls == expected.allgather_calls);
        CHECK(step.allgather.sent == expected.allgather_bytes);
        CHECK(step.allgather.received == expected.allgather_bytes);
        CHECK(step.reduce_scatter.calls == expected.reduce_scatter_calls);
        CHECK(step.reduce_scatter.sent == expected.reduce_scatter_bytes);
        CHECK(step.reduce_scatter.received == expected.reduce_scatter_bytes);
        CHECK(step.allreduce.calls == expected.allreduce_calls);
        CHECK(step.allreduce.sent == expected.allreduce_bytes);
        CHECK(step.allreduce.received == expected.allreduce_bytes);
        CHECK(step.broadcast.calls == 0);
        CHECK(step.alltoall.calls == 0);
        CHECK(step.sent() == expected.allgather_bytes + expected.reduce_scatter_bytes + expected.allreduce_bytes);
        if (n > 1) CHECK(step.sent() > 0);
        CHECK(step.wait_seconds > 0.0);  // the step waited on its collectives (the blocking ones at least)
      }
    }
  }
}

TEST_CASE("metrics.jsonl's step line keeps the step's traffic through its writer and reader", "[traffic]") {
  MetricsLine line;
  line.step = 3;
  line.traffic.allgather = {10, 7000, 7000};
  line.traffic.reduce_scatter = {5, 9000, 9000};
  line.traffic.broadcast = {1, 0, 64};
  line.traffic.wait_seconds = 0.25;
  const nlohmann::json written = line.to_json();
  CHECK(written.at("comm_wait_s").get<double>() == 0.25);
  CHECK(written.at("traffic").at("sent_bytes").get<std::uint64_t>() == 16000);
  CHECK(written.at("traffic").at("received_bytes").get<std::uint64_t>() == 16064);
  const std::optional<MetricsLine> read = MetricsLine::from_json(nlohmann::json::parse(written.dump()));
  REQUIRE(read.has_value());
  CHECK(read->traffic.allgather.calls == 10);
  CHECK(read->traffic.reduce_scatter.sent == 9000);
  CHECK(read->traffic.broadcast.received == 64);
  CHECK(read->traffic.sent() == 16000);
  CHECK(read->traffic.wait_seconds == 0.25);
  // A line written before the traffic existed reads as no traffic.
  const std::optional<MetricsLine> old = MetricsLine::from_json(nlohmann::json{{"step", 1}, {"loss", 2.0}});
  REQUIRE(old.has_value());
  CHECK(old->traffic.sent() == 0);
  CHECK(old->traffic.wait_seconds == 0.0);
}
