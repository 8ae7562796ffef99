#include "metareuse/dataset/sampler.h"

#include <fmt/format.h>

#include <numeric>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

// splitmix64: a portable generator, so the same (seed, epoch) gives the same
// order with any standard library (std::shuffle's use of the engine is not
// specified).
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

DistributedSampler::DistributedSampler(std::int64_t samples, int rank, int ranks, std::uint64_t seed, bool shuffle)
    : samples_(samples), rank_(rank), ranks_(ranks), seed_(seed), shuffle_(shuffle) {
  if (samples < 0 || ranks < 1 || rank < 0 || rank >= ranks) {
    MR_THROW("sampler: bad arguments (samples {}, rank {}, ranks {})", samples, rank, ranks);
  }
  set_epoch(0);
}

DistributedSampler DistributedSampler::global_order(std::int64_t samples, std::uint64_t seed) {
  return DistributedSampler(samples, 0, 1, seed);  // "rank 0 of 1": every rank draws the whole stream
}

void DistributedSampler::set_epoch(std::int64_t epoch) {
  epoch_ = epoch;
  position_ = 0;
  order_.resize(static_cast<std::size_t>(samples_));
  std::iota(order_.begin(), order_.end(), std::int64_t{0});
  if (!shuffle_) return;
  std::uint64_t state = seed_ ^ (0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(epoch + 1));
  // Fisher-Yates; the modulo bias is below 2^-40 for any dataset that fits in memory.
  for (std::int64_t i = samples_ - 1; i > 0; --i) {
    auto j = static_cast<std::int64_t>(splitmix64(state) % static_cast<std::uint64_t>(i + 1));
    std::swap(order_[i], order_[j]);
  }
}

std::int64_t DistributedSampler::samples_this_rank() const {
  return samples_ / ranks_ + (rank_ < samples_ % ranks_ ? 1 : 0);
}

std::optional<std::int64_t> DistributedSampler::next() {
  std::int64_t index = rank_ + position_ * ranks_;
  if (index >= samples_) return std::nullopt;
  ++position_;
  return order_[static_cast<std::size_t>(index)];
}

SamplerState DistributedSampler::state() const { return {seed_, epoch_, position_, samples_, ranks_}; }

void DistributedSampler::restore(const SamplerState& state) {
  if (state.samples != samples_ || state.ranks != ranks_) {
    MR_THROW("sampler state was saved for {} samples on {} rank(s); this run has {} samples on {} rank(s)",
             state.samples, state.ranks, samples_, ranks_);
  }
  if (state.position < 0 || state.position > samples_this_rank()) {
    MR_THROW("sampler state position {} is outside this rank's {} samples", state.position, samples_this_rank());
  }
  seed_ = state.seed;
  set_epoch(state.epoch);
  position_ = state.position;
}

}  // namespace metareuse
