// FSDP sharding and the optimizer on a toy unit model, at whatever rank count
// ctest starts (1, 2, 3): sharded gradients equal plain autograd's, a sharded
// AdamW trajectory equals torch::optim::AdamW + clip_grad_norm_ on the full
// model, the fused step equals the unfused update to 1e-6 over 20 steps, state is really 1/N per rank, and an overflow on one rank makes every
// rank skip. (The Hugging Face trajectory is checked on the Llama model in
// test_train.cpp.)
#include "torch_catch.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <c10/core/CPUAllocator.h>  // c10::SetCPUAllocator: the allocation count below

#include <atomic>

#include "metareuse/parallel/fsdp.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/llama.h"  // decoder_layer_forward: a real unit for the allocation count
#include "metareuse/train/optimizer.h"
#include "test_support.h"
#include "toy_model.h"

using namespace metareuse;

using namespace metareuse::test;

TEST_CASE("sharded gradients equal plain autograd on the full model", "[fsdp]") {
  Communicator& comm = test::runtime().world();
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());

  Plain plain;
  for (auto& [name, value] : toy_params()) plain.params[name] = value.clone().requires_grad_(true);
  torch::Tensor batch = toy_batch(0);
  torch::Tensor reference_loss = plain.loss(batch);
  reference_loss.backward();

  torch::Tensor loss = sharded_loss(model, batch);
  CHECK(loss.item<double>() == Approx(reference_loss.item<double>()).epsilon(1e-6));

  // Compare each unit's gradient shard with the same slice of the plain
  // gradients, flattened in the unit's parameter order and padded.
  for (std::size_t u = 0; u < model.size(); ++u) {
    ShardedUnit& unit = model.unit(u);
    std::vector<torch::Tensor> pieces;
    for (const auto& spec : unit.layout().parameters) pieces.push_back(plain.params[spec.name].grad().reshape({-1}));
    torch::Tensor flat = torch::cat(pieces);
    flat = torch::cat({flat, torch::zeros({unit.padded_numel() - unit.numel()})});
    torch::Tensor expected = flat.narrow(0, unit.shard_offset(), unit.shard_numel());
    INFO("unit " << unit.layout().name);
    CHECK(torch::allclose(unit.grad(), expected, /*rtol=*/1e-5, /*atol=*/1e-7));
  }
}

namespace {

// Counts the bytes the CPU allocator hands out while it is installed; the
// memory itself comes from the allocator it replaced (whose deleter frees it).
class CountingAllocator final : public c10::Allocator {
 public:
  CountingAllocator() : inner_(c10::GetCPUAllocator()) { c10::SetCPUAllocator(this); }
  ~CountingAllocator() override { c10::SetCPUAllocator(inner_); }
  CountingAllocator(const CountingAllocator&) = delete;
  CountingAllocator& operator=(const CountingAllocator&) = delete;

  c10::DataPtr allocate(std::size_t bytes) override {
    bytes_ += static_cast<std::int64_t>(bytes);
    return inner_->allocate(bytes);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }
  std::int64_t bytes() const { return bytes_; }

 private:
  c10::Allocator* inner_;
  std::atomic<std::int64_t> bytes_{0};
};

}  // namespace

TEST_CASE("a decoder layer's backward writes its gradient into one flat buffer", "[fsdp]") {
  // The bench shape's layer (about 0.73M parameters) on 8 tokens: the
  // activations' gradients are small beside the layer's, so the bytes
  // allocated in backward are the parameters' gradients and what assembles
  // them. One buffer per parameter plus the one flat gradient is about 2 flat
  // buffers; a zero-filled flat buffer per parameter view would be 9 or more.
  Communicator& comm = test::runtime().world();
  const LlamaConfig config = LlamaConfig::preset("debug-small");
  ShardedModel model(unit_layouts(config), comm, torch::kCPU, torch::kFloat32);
  model.set_recompute(false);  // backward only differentiates: no second forward to count
  LlamaModel initial(config);
  initial.init_weights(3);
  std::map<std::string, torch::Tensor> parameters;
  for (const auto& [name, value] : initial.named_parameters()) parameters.emplace(name, value.detach());
  model.load_full(parameters);

  const std::size_t u = 1;  // the first decoder layer
  const UnitLayout& layout = model.unit(u).layout();
  const RotaryTables rotary = rope_tables(rope_inv_freq(config), 0, 8, torch::kFloat32, torch::kCPU);
  torch::Generator generator = at::detail::createCPUGenerator(7);
  torch::Tensor hidden = torch::randn({1, 8, config.hidden_size}, generator).requires_grad_(true);  // (B, T, C)
  torch::Tensor out = model.run(u, hidden, [&](const torch::Tensor& x, const torch::Tensor& flat) {
    return decoder_layer_forward(config, layout, flat, x, rotary, nullptr);  // the padded buffer, as ShardedLlama passes it
  });
  torch::Tensor seed = torch::randn(out.sizes(), generator);  // (B, T, C)

  const std::int64_t flat_bytes = model.unit(u).padded_numel() * 4;
  std::int64_t allocated = 0;
  {
    CountingAllocator counter;
    out.backward(seed);
    allocated = counter.bytes();
  }
  model.end_micro_step();
  INFO("allocated " << allocated << " bytes in the backward of a layer of " << flat_bytes << " bytes at " << comm.size()
                    << " ranks");
  CHECK(allocated < 3 * flat_bytes);
  CHECK(model.unit(u).grad().abs().sum().item<double>() > 0.0);
  CHECK(hidden.grad().defined());
}

TEST_CASE("at one rank the fp32 gather is the master shard itself", "[fsdp]") {
  Communicator& comm = test::runtime().world();
  if (comm.size() != 1) return;
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  const CollectiveTraffic before = collective_traffic();
  for (std::size_t u = 0; u < model.size(); ++u) {
    ShardedUnit& unit = model.unit(u);
    torch::Tensor flat = unit.gather(torch::kFloat32);
    CHECK(flat.data_ptr() == unit.master().data_ptr());
    CHECK(unit.gather(torch::kBFloat16).data_ptr() != unit.master().data_ptr());  // a cast is a new buffer
  }
  const CollectiveTraffic traffic = collective_traffic().since(before);
  CHECK(traffic.allgather.calls == 2 * model.size());  // counted as collectives, moving nothing
  CHECK(traffic.sent() == 0);
  CHECK(traffic.received() == 0);
}

TEST_CASE("sharded AdamW with clipping follows torch::optim::AdamW on the full model", "[fsdp]") {
  Communicator& comm = test::runtime().world();
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  AdamW optimizer(model, AdamWConfig{3e-2, 0.9, 0.95, 1e-8, 0.1});
  LossScaler scaler(LossScalerConfig{});
  int64_t step = 0;

  Plain plain;
  std::vector<torch::Tensor> plain_params;
  for (auto& [name, value] : toy_params()) {
    plain.params[name] = value.clone().requires_grad_(true);
    plain_params.push_back(plain.params[name]);
  }
  torch::optim::AdamW reference(plain_params, torch::optim::AdamWOptions(3e-2).betas({0.9, 0.95}).eps(1e-8)
                                                  .weight_decay(0.1));
  // The toy's norm weight is not decayed in the sharded model; match that.
  reference.param_groups()[0].params().clear();
  torch::optim::AdamWOptions no_decay(3e-2);
  no_decay.betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0);
  for (auto& [name, value] : plain.params) {
    if (name != "norm.weight") reference.param_groups()[0].params().push_back(value);
  }
  reference.add_param_group(torch::optim::OptimizerParamGroup({plain.params["norm.weight"]},
                                                              std::make_unique<torch::optim::AdamWOptions>(no_decay)));

  for (int s = 0; s < 8; ++s) {
    torch::Tensor batch = toy_batch(s);
    reference.zero_grad();
    torch::Tensor reference_loss = plain.loss(batch);
    reference_loss.backward();
    double reference_norm = torch::nn::utils::clip_grad_norm_(plain_params, 0.5);
    reference.step();

    torch::Tensor loss = sharded_loss(model, batch);
    StepOutcome outcome = optimizer.step(3e-2, 0.5, scaler, step);
    INFO("step " << s);
    CHECK_FALSE(outcome.skipped);
    CHECK(loss.item<double>() == Approx(reference_loss.item<double>()).epsilon(1e-5));
    CHECK(outcome.grad_norm == Approx(reference_norm).epsilon(1e-5));
  }
  auto final_params = model.gather_full();
  for (auto& [name, value] : plain.params) {
    INFO(name);
    CHECK(torch::allclose(final_params.at(name), value.detach(), 1e-4, 1e-6));
  }
}

TEST_CASE("the fused AdamW step equals the unfused AdamW update within 1e-6 over 20 steps", "[fsdp]") {
  // The update the optimizer made before it called at::_fused_adamw_, one
  // op at a time on each shard, as the reference for the fused kernel.
  Communicator& comm = test::runtime().world();
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  const AdamWConfig config{3e-2, 0.9, 0.95, 1e-8, 0.1, "all"};
  AdamW optimizer(model, config);
  LossScaler scaler(LossScalerConfig{});
  int64_t step = 0;
  std::vector<torch::Tensor> params, exp_avg, exp_avg_sq;
  for (std::size_t u = 0; u < model.size(); ++u) {
    params.push_back(model.unit(u).master().clone());
    exp_avg.push_back(torch::zeros_like(params.back()));
    exp_avg_sq.push_back(torch::zeros_like(params.back()));
  }
  double worst = 0.0;
  for (int s = 0; s < 20; ++s) {
    sharded_loss(model, toy_batch(s));
    std::vector<torch::Tensor> grads;
    for (std::size_t u = 0; u < model.size(); ++u) grads.push_back(model.unit(u).grad().clone());
    const double lr = 3e-2 * (1.0 - 0.04 * s);  // a changing lr, as a schedule gives
    StepOutcome outcome = optimizer.step(lr, 0.5, scaler, step);
    REQUIRE_FALSE(outcome.skipped);
    const double clip = std::min(1.0, 0.5 / (outcome.grad_norm + 1e-6));
    const double bias_correction1 = 1.0 - std::pow(config.beta1, static_cast<double>(step));
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(config.beta2, static_cast<double>(step)));
    for (std::size_t u = 0; u < model.size(); ++u) {
      torch::Tensor grad = grads[u].mul(clip);
      params[u].mul_(1.0 - lr * config.weight_decay);
      exp_avg[u].lerp_(grad, 1.0 - config.beta1);
      exp_avg_sq[u].mul_(config.beta2).addcmul_(grad, grad, 1.0 - config.beta2);
      torch::Tensor denom = (exp_avg_sq[u].sqrt() / bias_correction2_sqrt).add_(config.eps);
      params[u].addcdiv_(exp_avg[u], denom, -lr / bias_correction1);
      if (params[u].numel() > 0) {
        worst = std::max(worst, (model.unit(u).master() - params[u]).abs().max().item<double>());
      }
    }
  }
  INFO("largest difference over 20 steps: " << worst);
  CHECK(worst <= 1e-6);
  CHECK(step == 20);
}

TEST_CASE("each rank holds about 1/N of the persistent state", "[fsdp]") {
  Communicator& comm = test::runtime().world();
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  AdamW optimizer(model, AdamWConfig{});
  // The model holds master and grad, the optimizer exp_avg and exp_avg_sq.
  const int64_t persistent_bytes = model.persistent_bytes() + optimizer.persistent_bytes();
  const int64_t n = comm.size();
  // 16 bytes per parameter (master, exp_avg, exp_avg_sq, grad in fp32), split N
  // ways; padding adds at most one element per unit.
  int64_t expected_max = 16 * (model.numel() / n + static_cast<int64_t>(model.size()));
  CHECK(persistent_bytes <= expected_max);
  CHECK(persistent_bytes >= 16 * model.numel() / n);
  int64_t total = comm.allreduce_value<std::int64_t>(persistent_bytes, ReduceOp::kSum);
  CHECK(total >= 16 * model.numel());
  CHECK(total <= 16 * (model.numel() + n * static_cast<int64_t>(model.size())));
}

TEST_CASE("an overflow on one rank's shard makes every rank skip and halve the scale", "[fsdp]") {
  Communicator& comm = test::runtime().world();
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  LossScalerConfig scaling;
  scaling.enabled = true;
  LossScaler scaler(scaling);
  AdamW optimizer(model, AdamWConfig{});
  int64_t step = 0;
  auto before = model.unit(1).master().clone();

  sharded_loss(model, toy_batch(0));
  if (comm.rank() == comm.size() - 1) model.unit(1).grad()[0] = std::numeric_limits<float>::infinity();
  StepOutcome outcome = optimizer.step(1e-3, 1.0, scaler, step);
  CHECK(outcome.skipped);
  CHECK(step == 0);
  CHECK(scaler.scale() == 32768.0);
  CHECK(torch::equal(model.unit(1).master(), before));  // no rank moved
  CHECK(model.unit(1).grad().abs().sum().item<double>() == 0.0);  // gradients dropped

  sharded_loss(model, toy_batch(1));
  outcome = optimizer.step(1e-3, 1.0, scaler, step);
  CHECK_FALSE(outcome.skipped);
  CHECK(step == 1);
  int64_t skipped_everywhere = comm.allreduce_value<std::int64_t>(outcome.skipped ? 1 : 0, ReduceOp::kSum);
  CHECK(skipped_everywhere == 0);
}

TEST_CASE("the learning-rate schedule and the adaptive epoch rule", "[train]") {
  LrScheduleConfig cosine{"cosine", 10, 110, 1e-3, 1e-4};
  CHECK(lr_at(cosine, 0) == Approx(1e-4));
  CHECK(lr_at(cosine, 9) == Approx(1e-3));
  CHECK(lr_at(cosine, 60) == Approx(0.5 * (1e-3 + 1e-4)));
  CHECK(lr_at(cosine, 110) == Approx(1e-4));
  LrScheduleConfig linear{"linear", 0, 100, 1.0, 0.0};
  CHECK(lr_at(linear, 25) == Approx(0.75));
  LrScheduleConfig constant{"constant", 0, 100, 0.5, 0.0};
  CHECK(lr_at(constant, 99) == 0.5);

  EpochPolicy policy;
  EpochPlan tiny = plan_epochs(3, 2, policy, 0, 0);
  CHECK(tiny.epochs == 1);
  CHECK(tiny.total_steps == 2);
  EpochPlan small_many_steps = plan_epochs(4, 1, EpochPolicy{5, 1, 3, 2}, 0, 0);
  CHECK(small_many_steps.total_steps == 3);  // capped by the small-data rule
  EpochPlan normal = plan_epochs(100, 8, policy, 0, 0);
  CHECK(normal.epochs == 2);
  CHECK(normal.steps_per_epoch == 13);
  CHECK(normal.total_steps == 26);
  CHECK(plan_epochs(100, 8, policy, 3, 0).total_steps == 39);
  CHECK(plan_epochs(100, 8, policy, 0, 7).total_steps == 7);
  CHECK_THAT(normal.reason, Catch::Matchers::Contains("2 epochs"));
}
