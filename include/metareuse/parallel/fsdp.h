// FSDP / ZeRO-3 style parameter sharding, hand-written: libtorch (2.11) has no
// C++ FSDP (FSDP2 is Python-only), and the PyPI build's c10d has no MPI
// process group.
//
// A model is cut into units (model/config.h: UnitLayout, the one description
// of a unit's flat buffer). Each unit's parameters live in one flat buffer,
// padded to a multiple of the world size; rank r persistently holds only
// elements [r * shard_numel, (r + 1) * shard_numel) of it, as fp32 master
// weights and an fp32 gradient shard. The optimizer (train/optimizer.h) keeps
// its own state in tensors of the same shard shape (ShardState).
//
//   forward of a unit:  all-gather the flat buffer in compute precision -> run
//                       the unit with views into it (no autograd graph kept)
//                       -> free the gathered buffer
//   backward of a unit: all-gather again -> recompute the unit with grad ->
//                       autograd::grad for the input and the flat buffer ->
//                       reduce-scatter the flat gradient into the fp32 shard
//                       -> free everything but the shard
//
// With more than one rank the collectives overlap compute (train.overlap,
// src/parallel/overlap.h): the next unit's all-gather is in flight while a
// unit runs, and a unit's reduce-scatter while the next unit's backward runs.
//
// This is activation checkpointing and ZeRO-3 in one mechanism; on a 2-unit
// MLP it gave bit-identical gradients to plain autograd (test_fsdp compares
// the sharded gradients with plain autograd on the full model).
#pragma once

#include <torch/torch.h>  // torch::Tensor, autograd

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/tensor_comm.h"  // PendingTensor: a started gather or reduce-scatter
#include "metareuse/model/config.h"  // UnitLayout
#include "metareuse/model/llama.h"   // UnitFn

namespace metareuse {

struct UnitCall;         // unit_call.h: one unit's call, kept until backward
class OverlapSchedule;   // overlap.h: prefetched gathers, reduce-scatters left in flight

// State kept per unit in the shape of that unit's shard, beside the master
// weights: one fp32 tensor (shard_numel,) per unit, saved in checkpoints under
// `name` (e.g. AdamW's "exp_avg"). Tensors are handles: a copy of this struct
// shares the storage, so loading into it fills the owner's tensors.
struct ShardState {
  std::string name;
  std::vector<torch::Tensor> per_unit;
};

// Full (gathered) parameters of one unit, by name; views into one flat buffer.
using ParamViews = std::map<std::string, torch::Tensor>;
// What a unit computes is a UnitFn (model/llama.h): output = fn(input,
// flat), where `flat` is the unit's gathered flat buffer [padded_numel]
// (ShardedUnit::views() gives shaped views by name). Extra inputs (labels,
// positions, masks) are captured by the closure.

class ShardedUnit {
 public:
  ShardedUnit(UnitLayout layout, Communicator& comm, torch::Device device);

  const UnitLayout& layout() const { return layout_; }
  int64_t numel() const { return layout_.numel; }        // real parameters
  int64_t padded_numel() const { return padded_numel_; } // multiple of world size
  int64_t shard_numel() const { return shard_numel_; }
  int64_t shard_offset() const { return shard_offset_; } // this rank's first element

  // Copies this rank's slice of each full parameter into the master shard.
  // Every parameter of the unit must be present with its shape.
  void load_full(const std::map<std::string, torch::Tensor>& full);
  // The same into any shard-shaped fp32 tensor (e.g. the optimizer's state).
  void load_full_into(const std::map<std::string, torch::Tensor>& full, torch::Tensor& shard) const;
  // All-gathers any shard-shaped tensor of this unit into its full flat
  // buffer [padded_numel] (a collective); for checkpoints of optimizer state.
  torch::Tensor gather_shard(const torch::Tensor& shard) const;
  // The gathered flat buffer [padded_numel] in `dtype` (a collective).
  torch::Tensor gather(torch::ScalarType dtype) const;
  // Shaped views of a gathered flat buffer.
  ParamViews views(const torch::Tensor& flat) const;
  // Reduce-scatters (sum) a full flat gradient [padded_numel] and adds this
  // rank's block to the fp32 gradient shard (a collective).
  void accumulate_grad(const torch::Tensor& flat_grad);
  // The two collectives above, started now (the result is the same): the
  // gathered buffer arrives at the handle's wait(); accumulate_grad() is
  // start_reduce_grad() then add_grad(), which waits and adds the block.
  PendingTensor start_gather(torch::ScalarType dtype) const;
  PendingTensor start_reduce_grad(const torch::Tensor& flat_grad);
  void add_grad(PendingTensor& reduced);

  torch::Tensor& master() { return master_; }        // fp32 [shard]
  torch::Tensor& grad() { return grad_; }            // fp32 [shard]

  // Bytes this rank holds persistently for this unit: master and gradient
  // (the optimizer counts its own state).
  int64_t persistent_bytes() const;

 private:
  UnitLayout layout_;
  Communicator& comm_;
  int64_t padded_numel_ = 0, shard_numel_ = 0, shard_offset_ = 0;
  torch::Tensor master_, grad_;
};

class ShardedModel {
 public:
  ShardedModel(std::vector<UnitLayout> units, Communicator& comm, torch::Device device,
               torch::ScalarType compute_dtype);
  ~ShardedModel();

  std::size_t size() const { return units_.size(); }
  ShardedUnit& unit(std::size_t index) { return *units_.at(index); }
  ShardedUnit& unit(const std::string& name);
  Communicator& comm() { return comm_; }
  torch::ScalarType compute_dtype() const { return compute_dtype_; }

  // Runs unit `index` on `input`. With grad mode on, the call joins the
  // autograd graph through run_unit_call (src/parallel/unit_call.h), whose
  // backward reduce-scatters the unit's gradient; with recompute on (the default) it
  // gathers again and recomputes in backward, with it off it keeps the
  // gathered buffer and the unit's graph until backward. With grad mode off
  // (eval), it just gathers, runs and frees. A unit may run several times per
  // step (tied embeddings + head).
  // `dtype` is the precision the unit is gathered in (default: the compute dtype).
  torch::Tensor run(std::size_t index, const torch::Tensor& input, UnitFn fn,
                    std::optional<torch::ScalarType> dtype = std::nullopt);
  // train.recompute, as the memory plan decided it (train/memory_plan.h: plan_memory).
  void set_recompute(bool enabled) { recompute_ = enabled; }
  bool recompute() const { return recompute_; }
  // train.overlap: with more than one rank, gathers are prefetched and
  // reduce-scatters left in flight while units compute (overlap.h); the
  // results are bit-identical either way. On by default.
  void set_overlap(bool enabled) { overlap_enabled_ = enabled; }
  bool overlap() const { return overlap_enabled_; }
  // Gathers served by a prefetch, and prefetches that went unused, so far.
  struct OverlapCounts {
    std::int64_t prefetched = 0, wasted = 0;
  };
  OverlapCounts overlap_counts() const;

  // Loads full parameters (by name) into every unit's master shard.
  void load_full(const std::map<std::string, torch::Tensor>& full);
  // Gathers every parameter in fp32 (a collective); for checkpoints and export.
  std::map<std::string, torch::Tensor> gather_full();
  void zero_grad();
  // Drops the calls of the last forward (after backward; also frees what a
  // forward with grad kept when its backward never ran), and finishes every
  // collective left in flight: the gradient shards are complete afterwards.
  void end_micro_step();
  int64_t numel() const;
  int64_t persistent_bytes() const;

 private:
  std::vector<std::unique_ptr<ShardedUnit>> units_;
  Communicator& comm_;
  torch::ScalarType compute_dtype_;
  // The calls made this micro-step (the graph holds them too).
  std::vector<c10::intrusive_ptr<UnitCall>> live_calls_;
  torch::Tensor anchor_;  // requires grad, so every unit call joins the graph
  bool recompute_ = true;
  bool overlap_enabled_ = true;
  std::unique_ptr<OverlapSchedule> overlap_;
};

}  // namespace metareuse
