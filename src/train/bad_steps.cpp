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

void BadStepGuard::after_step(std::int64_t step, double loss, bool skipped, ShardedModel& model) {
  // With fp16 loss scaling an overflow is the scaler's to handle (skip, lower the scale).
  const bool bad = !loss_scaling_ && (!std::isfinite(loss) || skipped);
  if (!bad) {
    consecutive_ = 0;
    return;
  }
  if (consecutive_++ == 0) first_bad_step_ = step;
  log_warn("step {}: non-finite {} (loss {}); the update was skipped ({} of train.max_bad_steps={} in a row)", step,
            std::isfinite(loss) ? "gradient" : "loss", loss, consecutive_, max_bad_steps_);
  if (consecutive_ < max_bad_steps_) return;
  std::string tensor = first_nonfinite_parameter(model);
  if (tensor.empty()) {
    tensor = std::isfinite(loss) ? "a gradient (the parameters are finite)"
                                 : "the loss (the parameters are finite: the input or the forward overflows)";
  }
  throw Error(fmt::format("training stopped at step {}: {} consecutive non-finite steps since step {} "
                          "(train.max_bad_steps={}); first non-finite tensor: {}. Lower train.lr, check the model's "
                          "weights, or resume from an earlier checkpoint",
                          step, consecutive_, first_bad_step_, max_bad_steps_, tensor));
}

}  // namespace metareuse
