// A resumable distributed sampler over the sequences of a dataset.
//
// Each epoch is a permutation of [0, samples) drawn from (seed, epoch); rank r
// takes positions r, r + ranks, r + 2 ranks, ... of it. So within an epoch the
// ranks' samples are disjoint and together cover every sample once (rank
// counts differ by at most one; min_samples_per_rank() is the number every
// rank has). The state (seed, epoch, position) goes into checkpoints and
// restores the exact stream.
//
// Two ways to use it:
//   - per rank, DistributedSampler(samples, rank, ranks, seed): each rank
//     draws its own disjoint samples;
//   - global_order(samples, seed): one stream, the same on every rank. The
//     trainer uses this: it draws each global batch from it and every rank
//     takes its rows of the batch (parallel/sharded_llama.cpp), so the order
//     of the data does not depend on the rank count, and a checkpoint resumes
//     on another rank count with the same stream.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace metareuse {

struct SamplerState {
  std::uint64_t seed = 0;
  std::int64_t epoch = 0;
  std::int64_t position = 0;  // samples this rank has taken in this epoch
  std::int64_t samples = 0;   // dataset size and rank count it was made for, checked on restore
  std::int64_t ranks = 1;
};

class DistributedSampler {
 public:
  DistributedSampler(std::int64_t samples, int rank, int ranks, std::uint64_t seed, bool shuffle = true);
  // The global order: one stream for the whole job, drawn identically on every
  // rank, which then takes its part of each batch (see above).
  static DistributedSampler global_order(std::int64_t samples, std::uint64_t seed);

  // Starts `epoch` from its beginning.
  void set_epoch(std::int64_t epoch);
  // This rank's next sample index, or nullopt at the end of the epoch.
  std::optional<std::int64_t> next();

  std::int64_t epoch() const { return epoch_; }
  std::int64_t samples_this_rank() const;
  std::int64_t min_samples_per_rank() const { return samples_ / ranks_; }

  SamplerState state() const;
  // Throws Error when the state was made for another dataset size or rank count.
  void restore(const SamplerState& state);

 private:
  std::int64_t samples_;
  int rank_;
  int ranks_;
  std::uint64_t seed_;
  bool shuffle_;
  std::int64_t epoch_ = 0;
  std::int64_t position_ = 0;
  std::vector<std::int64_t> order_;  // this epoch's permutation
};

}  // namespace metareuse
