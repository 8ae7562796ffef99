// Non-finite training steps, and when they stop training.
//
// Without loss scaling (fp32, bf16) a non-finite loss or gradient is no
// overflow: every such step is bad. With fp16 loss scaling a step whose
// gradients overflow is skipped and the scale lowered (the scaler's job); it
// is bad only once the scale it ran at is already the minimum
// (train.loss_scale_min), where lowering it can no longer help, and so is a
// non-finite loss there (the forward itself overflows). After
// train.max_bad_steps bad steps in a row training stops with an error that
// names the step and the first non-finite tensor.
#pragma once

#include <cstdint>
#include <string>

#include "metareuse/train/optimizer.h"  // LossScalerConfig, StepOutcome

namespace metareuse {

class ShardedModel;

// What after_step decided. When `stop`, `message` is the error to raise and
// `parameters_finite` says whether the weights (those of `last_good_step`:
// skipped steps change nothing) are still worth a checkpoint.
struct BadStepVerdict {
  bool stop = false;
  std::string message;
  bool parameters_finite = true;
  std::int64_t last_good_step = 0;
};

class BadStepGuard {
 public:
  BadStepGuard(std::int64_t max_bad_steps, const LossScalerConfig& loss_scaling)
      : max_bad_steps_(max_bad_steps), loss_scaling_(loss_scaling) {}

  // After each step, on every rank with the same arguments (the loss and the
  // step's outcome are global). Once the limit is reached it searches for the
  // first non-finite parameter, which gathers every unit: a collective every
  // rank takes part in.
  BadStepVerdict after_step(std::int64_t step, double loss, const StepOutcome& outcome, ShardedModel& model);

 private:
  bool is_bad(double loss, const StepOutcome& outcome) const;

  std::int64_t max_bad_steps_;
  LossScalerConfig loss_scaling_;
  std::int64_t consecutive_ = 0;
  std::int64_t first_bad_step_ = 0;
  std::int64_t last_good_step_ = 0;
};

}  // namespace metareuse
