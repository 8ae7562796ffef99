#include "overlap.h"

#include "metareuse/core/error.h"
#include "metareuse/parallel/fsdp.h"

namespace metareuse {

std::size_t OverlapSchedule::begin_call(std::size_t unit, torch::ScalarType dtype, bool recompute) {
  const std::size_t position = calls_.size();
  const Key key{unit, dtype};
  following_ = following_ && position < order_.size() && order_[position] == key;
  calls_.push_back({key, recompute});
  return position;
}

torch::Tensor OverlapSchedule::forward_gather(std::size_t position) {
  progress();
  torch::Tensor flat = take(position, /*for_backward=*/false);
  if (following_ && position + 1 < order_.size()) {
    prefetch(position + 1, /*for_backward=*/false);
  } else if (following_ && position + 1 == order_.size() && calls_[position].recompute) {
    prefetch(position, /*for_backward=*/true);  // the last call's backward comes first
  }
  return flat;
}

torch::Tensor OverlapSchedule::backward_gather(std::size_t position) {
  progress();
  torch::Tensor flat = take(position, /*for_backward=*/true);
  if (position > 0 && calls_[position - 1].recompute) prefetch(position - 1, /*for_backward=*/true);
  return flat;
}

void OverlapSchedule::reduce_scatter(std::size_t position, const torch::Tensor& flat_grad) {
  progress();
  const std::size_t unit = calls_.at(position).key.unit;
  reductions_.push_back({unit, units_.at(unit)->start_reduce_grad(flat_grad)});
  while (reductions_.size() > 1) finish_oldest_reduction();
}

void OverlapSchedule::end_micro_step() {
  drop_prefetch();
  while (!reductions_.empty()) finish_oldest_reduction();
  if (!calls_.empty()) {
    order_.clear();
    for (const Call& call : calls_) order_.push_back(call.key);
  }
  calls_.clear();
  following_ = true;
}

torch::Tensor OverlapSchedule::take(std::size_t position, bool for_backward) {
  const Key& key = calls_.at(position).key;
  if (prefetch_.buffer.active() && prefetch_.position == position && prefetch_.for_backward == for_backward &&
      prefetch_.key == key) {
    ++prefetched_;
    return prefetch_.buffer.wait();
  }
  drop_prefetch();
  return units_.at(key.unit)->gather(key.dtype);
}

void OverlapSchedule::prefetch(std::size_t position, bool for_backward) {
  drop_prefetch();
  const Key& key = position < calls_.size() ? calls_[position].key : order_.at(position);
  prefetch_.key = key;
  prefetch_.position = position;
  prefetch_.for_backward = for_backward;
  prefetch_.buffer = units_.at(key.unit)->start_gather(key.dtype);
}

void OverlapSchedule::drop_prefetch() {
  // Every rank started it, so every rank finishes it, used or not.
  if (!prefetch_.buffer.active()) return;
  prefetch_.buffer.wait();
  ++wasted_;
}

void OverlapSchedule::finish_oldest_reduction() {
  Reduction oldest = std::move(reductions_.front());
  reductions_.pop_front();
  units_.at(oldest.unit)->add_grad(oldest.block);
}

void OverlapSchedule::progress() {
  if (prefetch_.buffer.active()) prefetch_.buffer.test();
  for (Reduction& reduction : reductions_) reduction.block.test();
}

}  // namespace metareuse
