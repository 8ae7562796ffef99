#include "metareuse/train/bad_steps.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/parallel/fsdp.h"

namespace metareuse {
namespace {

// The first parameter (in unit order, then by name) holding a NaN or an
// infinity, or an empty string. Gathers each unit: every rank calls it.
std::string first_nonfinite_parameter(ShardedModel& model) {
  torch::NoGradGuard no_grad;
  std::string found;
  for (std::size_t u = 0; u < model.size(); ++u) {
    ShardedUnit& unit = model.unit(u);
    torch::Tensor full = unit.gather(torch::kFloat32);  // (padded_numel,)
    if (!found.empty()) continue;                       // keep gathering: the other ranks do
    for (const auto& [name, view] : unit.views(full)) {
      if (!torch::isfinite(view).all().item<bool>()) {
        const auto bad = (~torch::isfinite(view)).sum().item<int64_t>();
        found = fmt::format("parameter '{}' ({} of {} values non-finite)", name, bad, view.numel());
        break;
      }
    }
  }
  return found;
}

}  // namespace

bool BadStepGuard::is_bad(double loss, const StepOutcome& outcome) const {
  const bool nonfinite = !std::isfinite(loss) || outcome.skipped;
  if (!loss_scaling_.enabled) return nonfinite;
  // Above the minimum scale an overflow is the scaler's to handle.
  return nonfinite && outcome.loss_scale <= loss_scaling_.min_scale;
}

BadStepVerdict BadStepGuard::after_step(std::int64_t step, double loss, const StepOutcome& outcome,
                                        ShardedModel& model) {
  BadStepVerdict verdict;
  if (!outcome.skipped) last_good_step_ = step;
  verdict.last_good_step = last_good_step_;
  if (!is_bad(loss, outcome)) {
    consecutive_ = 0;
    return verdict;
  }
  if (consecutive_++ == 0) first_bad_step_ = step;
  const std::string where =
      loss_scaling_.enabled ? fmt::format(" at the minimum loss scale {} (train.loss_scale_min)", outcome.loss_scale)
                            : std::string();
  log_warn("step {}: non-finite {} (loss {}){}; the update was skipped ({} of train.max_bad_steps={} in a row)", step,
           std::isfinite(loss) ? "gradient" : "loss", loss, where, consecutive_, max_bad_steps_);
  if (consecutive_ < max_bad_steps_) return verdict;
  std::string tensor = first_nonfinite_parameter(model);
  verdict.parameters_finite = tensor.empty();
  if (tensor.empty()) {
    tensor = std::isfinite(loss) ? "a gradient (the parameters are finite)"
                                 : "the loss (the parameters are finite: the input or the forward overflows)";
  }
  verdict.stop = true;
  verdict.message = fmt::format(
      "training stopped at step {}: {} consecutive non-finite steps{} since step {} (train.max_bad_steps={}); first "
      "non-finite tensor: {}. {}",
      step, consecutive_, where, first_bad_step_, max_bad_steps_, tensor,
      loss_scaling_.enabled ? "fp16 overflows even unscaled: train in bf16 or fp32, lower train.lr, or check the "
                              "model's weights and the data"
                            : "Lower train.lr, check the model's weights, or resume from an earlier checkpoint");
  return verdict;
}

}  // namespace metareuse
