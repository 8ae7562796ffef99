// Non-finite training steps. With fp16 loss scaling a step whose gradients
// overflow is skipped and the scale lowered (the scaler's job, unchanged).
// Without loss scaling (fp32, bf16) a non-finite loss or gradient is no
// overflow: after train.max_bad_steps consecutive bad steps training stops
// with an error naming the step and the first non-finite tensor.
#pragma once

#include <cstdint>

namespace metareuse {

class ShardedModel;

class BadStepGuard {
 public:
  BadStepGuard(std::int64_t max_bad_steps, bool loss_scaling)
      : max_bad_steps_(max_bad_steps), loss_scaling_(loss_scaling) {}

  // After each step, on every rank with the same arguments (the loss and the
  // skip decision are global). Throws once the limit is reached; the tensor
  // search gathers parameters, a collective every rank takes part in.
  void after_step(std::int64_t step, double loss, bool skipped, ShardedModel& model);

  std::int64_t consecutive() const { return consecutive_; }

 private:
  std::int64_t max_bad_steps_;
  bool loss_scaling_;
  std::int64_t consecutive_ = 0;
  std::int64_t first_bad_step_ = 0;
};

}  // namespace metareuse
