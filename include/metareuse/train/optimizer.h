// The optimizer side of training on sharded units: dynamic loss scaling, the
// learning-rate schedule, global grad-norm clipping and AdamW on the flat fp32
// shards (torch.optim.AdamW semantics, a few large tensor ops per unit). AdamW
// owns its moments, sharded like the model (ZeRO: each rank keeps its slice).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "metareuse/parallel/fsdp.h"

namespace metareuse {

struct AdamWConfig {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // Which parameters decay: "matrices" (2-D and up, the default) or "all"
  // (train.weight_decay_policy).
  std::string decay_policy = "matrices";
};

struct LossScalerConfig {
  bool enabled = false;          // fp16 turns it on; fp32/bf16 need none
  double initial_scale = 65536;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // good steps before the scale grows
  int64_t hysteresis = 1;          // overflows tolerated before backing off
  double min_scale = 1.0;
};

// Dynamic loss scaling. The state is part of the checkpoint.
class LossScaler {
 public:
  struct State {
    double scale = 1.0;
    int64_t good_steps = 0;
    int64_t hysteresis_left = 1;
  };

  explicit LossScaler(LossScalerConfig config);
  double scale() const { return config_.enabled ? state_.scale : 1.0; }
  // Records one step's outcome; returns true when the step must be skipped.
  bool update(bool found_inf);
  const State& state() const { return state_; }
  void set_state(const State& state) { state_ = state; }

 private:
  LossScalerConfig config_;
  State state_;
};

struct LrScheduleConfig {
  std::string kind = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double lr = 3e-4;
  double lr_min = 0.0;
};

// Learning rate at optimizer step `step` (0-based): linear warmup from 0, then
// cosine or linear decay to lr_min at total_steps, or constant.
double lr_at(const LrScheduleConfig& schedule, int64_t step);

struct StepOutcome {
  bool skipped = false;     // inf/NaN in some rank's gradient shard
  double grad_norm = 0.0;   // global, before clipping, unscaled
  double loss_scale = 1.0;  // the scale the step's gradients carried
};

// AdamW over every unit of a sharded model. Its state is the two moments, one
// fp32 tensor per unit shaped like that unit's shard, and the ranges of each
// shard where weight decay applies (from decay_policy and the unit layouts).
class AdamW {
 public:
  AdamW(ShardedModel& model, AdamWConfig config);

  // One optimizer step:
  //  1. every rank checks its gradient shards for inf/NaN; allreduce(MAX) so
  //     all ranks skip together, and the scaler backs off;
  //  2. the global grad norm: per-rank sums of squares, allreduce(SUM);
  //  3. gradients are unscaled and clipped to max_grad_norm (<= 0: no clip);
  //  4. AdamW on each unit's shards at learning rate `lr`; `step` counts taken
  //     steps (bias correction).
  // Gradients are zeroed afterwards.
  StepOutcome step(double lr, double max_grad_norm, LossScaler& scaler, int64_t& step);

  torch::Tensor& exp_avg(std::size_t unit) { return exp_avg_.at(unit); }        // fp32 (shard,)
  torch::Tensor& exp_avg_sq(std::size_t unit) { return exp_avg_sq_.at(unit); }  // fp32 (shard,)
  // The moments as checkpoints save and load them ("exp_avg", "exp_avg_sq").
  std::vector<ShardState> state() const;
  // Bytes this rank holds for the moments.
  int64_t persistent_bytes() const;

 private:
  ShardedModel& model_;
  AdamWConfig config_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  // Per unit: [begin, end) ranges of this rank's shard where weight decay applies.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> decay_ranges_;
};

struct EpochPolicy {
  int64_t small_dataset_examples = 5;  // fewer examples than this: the small-data rule
  int64_t small_dataset_epochs = 1;
  int64_t small_dataset_max_steps = 10;
  int64_t default_epochs = 2;
};

struct EpochPlan {
  int64_t examples = 0;
  int64_t epochs = 0;
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;
  std::string reason;
};

// The seed's adaptive-epoch rule: fewer than 5 examples -> 1 epoch and at most
// 10 steps, else 2 epochs. `epochs_override` / `max_steps_override` > 0 win.
EpochPlan plan_epochs(int64_t examples, int64_t global_batch, const EpochPolicy& policy, int64_t epochs_override,
                      int64_t max_steps_override);

}  // namespace metareuse
