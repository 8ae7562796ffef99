// A toy unit model for the sharding, optimizer and checkpoint tests: tied
// embeddings + head, two residual MLP blocks and a scale "norm", written once
// over a runner so the sharded and the plain (full-parameter) model compute
// the same thing.
#pragma once

#include <fmt/format.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "metareuse/parallel/fsdp.h"

namespace metareuse::test {
namespace F = torch::nn::functional;

using ViewFn = std::function<torch::Tensor(const torch::Tensor&, const ParamViews&)>;
inline constexpr int64_t V = 37, C = 12, T = 9, B = 5;  // vocab, width, sequence, global batch

// Weight decay applies to the matrices (AdamW's default policy), not to norm.weight.
inline std::vector<UnitLayout> toy_units() {
  return {
      UnitLayout::of("embed_head", {{"wte", {V, C}}}),
      UnitLayout::of("block.0", {{"block.0.w1", {2 * C, C}}, {"block.0.w2", {C, 2 * C}}}),
      UnitLayout::of("block.1", {{"block.1.w1", {2 * C, C}}, {"block.1.w2", {C, 2 * C}}}),
      UnitLayout::of("norm", {{"norm.weight", {C}}}),
  };
}

inline std::map<std::string, torch::Tensor> toy_params() {
  torch::manual_seed(11);
  std::map<std::string, torch::Tensor> p;
  p["wte"] = torch::randn({V, C}) * 0.3;
  for (int i = 0; i < 2; ++i) {
    p[fmt::format("block.{}.w1", i)] = torch::randn({2 * C, C}) * 0.3;
    p[fmt::format("block.{}.w2", i)] = torch::randn({C, 2 * C}) * 0.3;
  }
  p["norm.weight"] = 1.0 + 0.1 * torch::randn({C});
  return p;
}

inline torch::Tensor toy_batch(int step) {
  torch::manual_seed(100 + step);
  return torch::randint(0, V, {B, T}, torch::kInt64);
}

// The toy forward, written once over a "runner" so the sharded and the plain
// model compute the same thing. Returns the sum of next-token losses divided
// by `normalizer` (the global token count, so per-rank sums add up to the mean).
template <typename Runner>
torch::Tensor toy_loss(Runner run, const torch::Tensor& ids, double normalizer) {
  auto embed = [](const torch::Tensor& x, const ParamViews& p) { return F::embedding(x, p.at("wte")); };
  torch::Tensor h = run(0, ids, embed);  // (b, T, C)
  for (int i = 0; i < 2; ++i) {
    std::string w1 = fmt::format("block.{}.w1", i), w2 = fmt::format("block.{}.w2", i);
    h = run(1 + i, h, [w1, w2](const torch::Tensor& x, const ParamViews& p) {
      return x + torch::tanh(x.matmul(p.at(w1).t())).matmul(p.at(w2).t());
    });
  }
  h = run(3, h, [](const torch::Tensor& x, const ParamViews& p) { return x * p.at("norm.weight"); });
  torch::Tensor labels = ids.slice(1, 1);  // (b, T-1)
  return run(0, h, [labels, normalizer](const torch::Tensor& x, const ParamViews& p) {
    torch::Tensor logits = x.slice(1, 0, T - 1).matmul(p.at("wte").t());  // (b, T-1, V)
    return F::cross_entropy(logits.reshape({-1, V}), labels.reshape({-1}),
                            F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
           normalizer;
  });
}

// This rank's rows of the global batch: r, r + N, ...
inline torch::Tensor my_rows(const torch::Tensor& batch, int rank, int world) {
  return batch.index({torch::arange(rank, B, world)});
}

struct Plain {
  std::map<std::string, torch::Tensor> params;
  std::vector<std::vector<std::string>> unit_names = {{"wte"}, {"block.0.w1", "block.0.w2"},
                                                      {"block.1.w1", "block.1.w2"}, {"norm.weight"}};
  torch::Tensor loss(const torch::Tensor& ids) {
    auto run = [this](std::size_t u, const torch::Tensor& x, const ViewFn& fn) {
      ParamViews views;
      for (const auto& name : unit_names[u]) views[name] = params[name];
      return fn(x, views);
    };
    return toy_loss(run, ids, static_cast<double>(B * (T - 1)));
  }
};

inline torch::Tensor sharded_loss(ShardedModel& model, const torch::Tensor& batch) {
  Communicator& comm = model.comm();
  torch::Tensor rows = my_rows(batch, comm.rank(), comm.size());
  auto run = [&model](std::size_t u, const torch::Tensor& x, ViewFn fn) {
    ShardedUnit* unit = &model.unit(u);
    return model.run(u, x, [unit, fn](const torch::Tensor& input, const torch::Tensor& flat) {
      return fn(input, unit->views(flat));
    });
  };
  torch::Tensor loss = toy_loss(run, rows, static_cast<double>(B * (T - 1)));
  loss.backward();
  model.end_micro_step();
  double total = comm.allreduce_value<double>(loss.item<double>(), ReduceOp::kSum);
  return torch::tensor(total, torch::kFloat64);
}


}  // namespace metareuse::test
