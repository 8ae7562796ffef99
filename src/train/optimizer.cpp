#include "metareuse/train/optimizer.h"

#include <ATen/record_function.h>  // RECORD_USER_SCOPE: the step shows up in a profile (bench/train)
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "metareuse/core/error.h"
#include "metareuse/distributed/runtime.h"  // CollectiveScope: the step's host read is watched

namespace metareuse {

LossScaler::LossScaler(LossScalerConfig config) : config_(config) {
  state_.scale = config_.initial_scale;
  state_.hysteresis_left = config_.hysteresis;
}

bool LossScaler::update(bool found_inf) {
  if (!config_.enabled) return found_inf;
  if (found_inf) {
    state_.good_steps = 0;
    if (--state_.hysteresis_left <= 0) {
      state_.scale = std::max(config_.min_scale, state_.scale * config_.backoff_factor);
      state_.hysteresis_left = config_.hysteresis;
    }
    return true;
  }
  if (++state_.good_steps >= config_.growth_interval) {
    state_.scale *= config_.growth_factor;
    state_.good_steps = 0;
    state_.hysteresis_left = config_.hysteresis;
  }
  return false;
}

double lr_at(const LrScheduleConfig& schedule, int64_t step) {
  if (schedule.warmup_steps > 0 && step < schedule.warmup_steps) {
    return schedule.lr * static_cast<double>(step + 1) / static_cast<double>(schedule.warmup_steps);
  }
  if (schedule.kind == "constant") return schedule.lr;
  int64_t decay_steps = std::max<int64_t>(1, schedule.total_steps - schedule.warmup_steps);
  double progress = std::min(1.0, static_cast<double>(step - schedule.warmup_steps) / static_cast<double>(decay_steps));
  if (schedule.kind == "linear") return schedule.lr_min + (schedule.lr - schedule.lr_min) * (1.0 - progress);
  if (schedule.kind == "cosine") {
    return schedule.lr_min + 0.5 * (schedule.lr - schedule.lr_min) * (1.0 + std::cos(M_PI * progress));
  }
  MR_THROW("unknown learning-rate schedule '{}' (cosine|linear|constant)", schedule.kind);
}

namespace {

// This rank's [begin, end) ranges of `unit`'s shard where weight decay applies:
// the policy's parameters, adjacent ones merged.
std::vector<std::pair<int64_t, int64_t>> decay_ranges_of(const ShardedUnit& unit, const std::string& policy) {
  if (policy != "matrices" && policy != "all") {
    MR_THROW("weight-decay policy must be 'matrices' or 'all', got '{}' (train.weight_decay_policy)", policy);
  }
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const int64_t shard_begin = unit.shard_offset();
  const int64_t shard_end = shard_begin + unit.shard_numel();
  for (const UnitParameter& parameter : unit.layout().parameters) {
    const bool decays = policy == "all" || parameter.shape.size() >= 2;
    int64_t begin = std::max(parameter.offset, shard_begin);
    int64_t end = std::min(parameter.offset + parameter.numel, shard_end);
    if (begin >= end || !decays) continue;
    if (!ranges.empty() && ranges.back().second == begin - shard_begin) {
      ranges.back().second = end - shard_begin;
    } else {
      ranges.emplace_back(begin - shard_begin, end - shard_begin);
    }
  }
  return ranges;
}

}  // namespace

AdamW::AdamW(ShardedModel& model, AdamWConfig config) : model_(model), config_(std::move(config)) {
  for (std::size_t u = 0; u < model_.size(); ++u) {
    ShardedUnit& unit = model_.unit(u);
    exp_avg_.push_back(torch::zeros_like(unit.master()));
    exp_avg_sq_.push_back(torch::zeros_like(unit.master()));
    decay_ranges_.push_back(decay_ranges_of(unit, config_.decay_policy));
  }
}

std::vector<ShardState> AdamW::state() const { return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}}; }

int64_t AdamW::persistent_bytes() const {
  int64_t bytes = 0;
  for (const auto* moments : {&exp_avg_, &exp_avg_sq_}) {
    for (const torch::Tensor& t : *moments) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  }
  return bytes;
}

StepOutcome AdamW::step(double lr, double max_grad_norm, LossScaler& scaler, int64_t& step) {
  RECORD_USER_SCOPE("metareuse::optimizer::step");  // a profile counts everything below as the optimizer
  torch::NoGradGuard no_grad;
  StepOutcome outcome;
  outcome.loss_scale = scaler.scale();
  const AdamWConfig& adamw = config_;

  // 1 + 2: every shard's norm in one fused pass, their squares summed on the
  // device, and one read on the host: an inf or NaN in any shard makes the sum
  // non-finite, so one number carries both the overflow flag and the norm.
  std::vector<torch::Tensor> grads;
  grads.reserve(model_.size());
  for (std::size_t u = 0; u < model_.size(); ++u) grads.push_back(model_.unit(u).grad());
  const torch::Tensor norms = torch::stack(torch::_foreach_norm(grads, 2));  // (units,) fp32
  const torch::Tensor squares = norms.to(torch::kFloat64).square().sum();
  double local_sq = 0.0;
  {
    CollectiveScope watch("the gradient norm (waits for the step's kernels and collectives)");
    local_sq = squares.item<double>();
  }
  const bool local_inf = !std::isfinite(local_sq);
  double inf_and_sq[2] = {local_inf ? 1.0 : 0.0, local_inf ? 0.0 : local_sq};
  model_.comm().allreduce(&inf_and_sq[0], 1, DType::kFloat64, ReduceOp::kMax);
  model_.comm().allreduce(&inf_and_sq[1], 1, DType::kFloat64, ReduceOp::kSum);
  bool found_inf = inf_and_sq[0] > 0.0;

  if (scaler.update(found_inf)) {
    outcome.skipped = true;
    outcome.grad_norm = std::numeric_limits<double>::quiet_NaN();
    model_.zero_grad();
    return outcome;
  }

  const double inv_scale = 1.0 / outcome.loss_scale;
  outcome.grad_norm = std::sqrt(inf_and_sq[1]) * inv_scale;
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1.
  double clip = 1.0;
  if (max_grad_norm > 0.0) clip = std::min(1.0, max_grad_norm / (outcome.grad_norm + 1e-6));
  const double grad_factor = inv_scale * clip;

  ++step;

  // Torch's fused AdamW (at::_fused_adamw_, CPU and CUDA) over every unit's
  // flat fp32 shard in one call. Weight decay is applied before it, only on
  // the policy's ranges of each shard (the kernel would decay whole tensors);
  // that is AdamW's order, decay then update. Each state step is this step's
  // count, from 1 (torch.optim adds one before it calls the kernel).
  std::vector<torch::Tensor> params, state_steps;
  params.reserve(model_.size());
  state_steps.reserve(model_.size());
  if (grad_factor != 1.0) torch::_foreach_mul_(grads, grad_factor);
  for (std::size_t u = 0; u < model_.size(); ++u) {
    torch::Tensor& param = model_.unit(u).master();  // (shard,) fp32
    if (adamw.weight_decay != 0.0) {
      for (const auto& [begin, end] : decay_ranges_[u]) {
        param.narrow(0, begin, end - begin).mul_(1.0 - lr * adamw.weight_decay);
      }
    }
    params.push_back(param);
    state_steps.push_back(torch::full({}, static_cast<double>(step), param.options()));
  }
  at::_fused_adamw_(params, grads, exp_avg_, exp_avg_sq_, /*max_exp_avg_sqs=*/{}, state_steps, lr, adamw.beta1,
                    adamw.beta2, /*weight_decay=*/0.0, adamw.eps, /*amsgrad=*/false, /*maximize=*/false);
  model_.zero_grad();
  return outcome;
}

EpochPlan plan_epochs(int64_t examples, int64_t global_batch, const EpochPolicy& policy, int64_t epochs_override,
                      int64_t max_steps_override) {
  MR_CHECK(global_batch > 0, "global batch must be positive, got {}", global_batch);
  EpochPlan plan;
  plan.examples = examples;
  plan.steps_per_epoch = std::max<int64_t>(1, (examples + global_batch - 1) / global_batch);
  int64_t step_cap = 0;
  if (examples < policy.small_dataset_examples) {
    plan.epochs = policy.small_dataset_epochs;
    step_cap = policy.small_dataset_max_steps;
    plan.reason = fmt::format("{} examples < {}: {} epoch(s), at most {} steps", examples,
                              policy.small_dataset_examples, plan.epochs, step_cap);
  } else {
    plan.epochs = policy.default_epochs;
    plan.reason = fmt::format("{} examples >= {}: {} epochs", examples, policy.small_dataset_examples, plan.epochs);
  }
  if (epochs_override > 0) {
    plan.epochs = epochs_override;
    plan.reason += fmt::format("; train.epochs overrides: {} epoch(s)", plan.epochs);
  }
  plan.total_steps = plan.epochs * plan.steps_per_epoch;
  if (step_cap > 0 && epochs_override <= 0) plan.total_steps = std::min(plan.total_steps, step_cap);
  if (max_steps_override > 0) {
    plan.total_steps = max_steps_override;
    plan.reason += fmt::format("; train.max_steps overrides: {} steps", plan.total_steps);
  }
  return plan;
}

}  // namespace metareuse
