#include "metareuse/parallel/fsdp.h"

#include <fmt/format.h>

#include "metareuse/core/error.h"
#include "metareuse/distributed/tensor_comm.h"
#include "overlap.h"    // OverlapSchedule: prefetched gathers, reduce-scatters in flight
#include "unit_call.h"  // UnitCall, run_unit_call: the one recompute Function

namespace metareuse {

ShardedUnit::ShardedUnit(UnitLayout layout, Communicator& comm, torch::Device device)
    : layout_(std::move(layout)), comm_(comm) {
  const int64_t world = comm_.size();
  shard_numel_ = (layout_.numel + world - 1) / world;
  padded_numel_ = shard_numel_ * world;
  shard_offset_ = shard_numel_ * comm_.rank();

  auto fp32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  master_ = torch::zeros({shard_numel_}, fp32);
  grad_ = torch::zeros({shard_numel_}, fp32);
}

void ShardedUnit::load_full(const std::map<std::string, torch::Tensor>& full) { load_full_into(full, master_); }

torch::Tensor ShardedUnit::gather_shard(const torch::Tensor& shard) const {
  torch::NoGradGuard no_grad;
  MR_CHECK(shard.numel() == shard_numel_, "unit {}: shard has {} elements, expected {}", layout_.name, shard.numel(),
           shard_numel_);
  return allgather(comm_, shard.contiguous());  // (padded_numel,)
}

void ShardedUnit::load_full_into(const std::map<std::string, torch::Tensor>& full, torch::Tensor& shard) const {
  torch::NoGradGuard no_grad;
  for (const UnitParameter& spec : layout_.parameters) {
    auto found = full.find(spec.name);
    if (found == full.end()) MR_THROW("unit {}: missing parameter '{}'", layout_.name, spec.name);
    const torch::Tensor& value = found->second;
    if (value.sizes().vec() != spec.shape) {
      MR_THROW("unit {}: parameter '{}' has shape {}, expected {}", layout_.name, spec.name, c10::str(value.sizes()),
               c10::str(c10::IntArrayRef(spec.shape)));
    }
    int64_t begin = std::max(spec.offset, shard_offset_);
    int64_t end = std::min(spec.offset + spec.numel, shard_offset_ + shard_numel_);
    if (begin >= end) continue;
    torch::Tensor flat = value.reshape({-1});  // (numel,)
    shard.narrow(0, begin - shard_offset_, end - begin)
        .copy_(flat.narrow(0, begin - spec.offset, end - begin).to(torch::kFloat32));
  }
}

torch::Tensor ShardedUnit::gather(torch::ScalarType dtype) const {
  torch::NoGradGuard no_grad;
  torch::Tensor shard = master_.to(dtype).contiguous();
  return allgather(comm_, shard);  // (padded_numel,)
}

ParamViews ShardedUnit::views(const torch::Tensor& flat) const {
  const std::vector<torch::Tensor> views = unit_views(layout_, flat);  // one split: its backward is one flat buffer
  ParamViews out;
  for (std::size_t i = 0; i < views.size(); ++i) out.emplace(layout_.parameters[i].name, views[i]);
  return out;
}

void ShardedUnit::accumulate_grad(const torch::Tensor& flat_grad) {
  torch::NoGradGuard no_grad;
  MR_CHECK(flat_grad.numel() == padded_numel_, "unit {}: gradient has {} elements, expected {}", layout_.name,
           flat_grad.numel(), padded_numel_);
  torch::Tensor shard = reduce_scatter(comm_, flat_grad.to(torch::kFloat32).contiguous(), ReduceOp::kSum);
  grad_.add_(shard);
}

PendingTensor ShardedUnit::start_gather(torch::ScalarType dtype) const {
  torch::NoGradGuard no_grad;
  return start_allgather(comm_, master_.to(dtype).contiguous());  // (padded_numel,) at wait()
}

PendingTensor ShardedUnit::start_reduce_grad(const torch::Tensor& flat_grad) {
  torch::NoGradGuard no_grad;
  MR_CHECK(flat_grad.numel() == padded_numel_, "unit {}: gradient has {} elements, expected {}", layout_.name,
           flat_grad.numel(), padded_numel_);
  return start_reduce_scatter(comm_, flat_grad.to(torch::kFloat32).contiguous(), ReduceOp::kSum);
}

void ShardedUnit::add_grad(PendingTensor& reduced) {
  torch::NoGradGuard no_grad;
  grad_.add_(reduced.wait());
}

int64_t ShardedUnit::persistent_bytes() const {
  int64_t bytes = 0;
  for (const auto* t : {&master_, &grad_}) {
    bytes += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return bytes;
}

ShardedModel::ShardedModel(std::vector<UnitLayout> units, Communicator& comm, torch::Device device,
                           torch::ScalarType compute_dtype)
    : comm_(comm), compute_dtype_(compute_dtype) {
  for (auto& layout : units) units_.push_back(std::make_unique<ShardedUnit>(std::move(layout), comm, device));
  anchor_ = torch::zeros({1}, torch::TensorOptions().device(device)).requires_grad_(true);
  overlap_ = std::make_unique<OverlapSchedule>(units_);
}

ShardedModel::~ShardedModel() = default;

ShardedModel::OverlapCounts ShardedModel::overlap_counts() const {
  return {overlap_->prefetched(), overlap_->wasted()};
}

void ShardedModel::end_micro_step() {
  live_calls_.clear();
  overlap_->end_micro_step();
}

ShardedUnit& ShardedModel::unit(const std::string& name) {
  for (auto& unit : units_) {
    if (unit->layout().name == name) return *unit;
  }
  MR_THROW("no unit named '{}'", name);
}

torch::Tensor ShardedModel::run(std::size_t index, const torch::Tensor& input, UnitFn fn,
                                std::optional<torch::ScalarType> gather_dtype) {
  ShardedUnit& target = unit(index);
  const torch::ScalarType dtype = gather_dtype.value_or(compute_dtype_);
  if (!torch::GradMode::is_enabled()) {
    torch::Tensor flat = target.gather(dtype);
    return fn(input, flat);
  }
  auto call = c10::make_intrusive<UnitCall>();
  if (overlap_enabled_ && comm_.size() > 1) {
    // The schedule hands out each gather (its forward's first, its
    // recompute's second) and takes the gradient; see overlap.h.
    const std::size_t position = overlap_->begin_call(index, dtype, recompute_);
    OverlapSchedule* schedule = overlap_.get();
    call->gather = [schedule, position, gathered = false]() mutable {
      const bool first = !gathered;
      gathered = true;
      return first ? schedule->forward_gather(position) : schedule->backward_gather(position);  // (padded_numel,)
    };
    call->deliver_grad = [schedule, position](const torch::Tensor& flat_grad) {
      schedule->reduce_scatter(position, flat_grad);  // into the fp32 shard by end_micro_step
      return torch::Tensor();
    };
  } else {
    call->gather = [&target, dtype] { return target.gather(dtype); };  // (padded_numel,)
    call->deliver_grad = [&target](const torch::Tensor& flat_grad) {
      target.accumulate_grad(flat_grad);  // reduce-scatter into the fp32 shard
      return torch::Tensor();
    };
  }
  call->fn = std::move(fn);
  call->recompute = recompute_;
  live_calls_.push_back(call);
  return run_unit_call(input, anchor_, std::move(call));
}

void ShardedModel::load_full(const std::map<std::string, torch::Tensor>& full) {
  for (auto& unit : units_) unit->load_full(full);
}

std::map<std::string, torch::Tensor> ShardedModel::gather_full() {
  std::map<std::string, torch::Tensor> out;
  for (auto& unit : units_) {
    torch::Tensor flat = unit->gather(torch::kFloat32);
    for (auto& [name, view] : unit->views(flat)) out.emplace(name, view.clone());
  }
  return out;
}

void ShardedModel::zero_grad() {
  for (auto& unit : units_) unit->grad().zero_();
}

int64_t ShardedModel::numel() const {
  int64_t n = 0;
  for (const auto& unit : units_) n += unit->numel();
  return n;
}

int64_t ShardedModel::persistent_bytes() const {
  int64_t n = 0;
  for (const auto& unit : units_) n += unit->persistent_bytes();
  return n;
}

}  // namespace metareuse
