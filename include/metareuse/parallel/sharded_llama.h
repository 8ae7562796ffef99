// Llama on the sharding engine: the model's units (model/config.h) become
// sharded units (parallel/fsdp.h), and one training micro-step runs the model's
// functional unit forwards through ShardedModel::run, so each unit is gathered
// just before it runs and its gradient is reduce-scattered in backward.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "metareuse/parallel/fsdp.h"
#include "metareuse/model/chunked_loss.h"  // kLossChunkRowsDefault
#include "metareuse/model/config.h"
#include "metareuse/model/llama.h"  // DocumentLayout, next_token_targets, the forward order

namespace metareuse {

// A global batch: every rank sees the same rows and takes its share.
struct TrainBatch {
  torch::Tensor input_ids;  // (B, T) int64
  torch::Tensor targets;    // (B, T) int64: the token position t predicts, or -100 (no loss)
  // Optional: where each row's documents are. Given, each micro-batch is cut
  // to its longest row (dynamic padding: trailing padding is never computed),
  // and a micro-batch with several documents in a row runs with the
  // block-diagonal causal mask and per-document positions.
  DocumentLayout documents;
};

class ShardedLlama {
 public:
  ShardedLlama(LlamaConfig config, Communicator& comm, torch::Device device, torch::ScalarType compute_dtype);

  const LlamaConfig& config() const { return config_; }
  ShardedModel& sharded() { return model_; }

  // Rows of the head and its cross-entropy computed at a time (head_loss_sum;
  // train.loss_chunk_rows): 0 runs them over the whole micro-batch at once.
  void set_loss_chunk_rows(int64_t rows);
  int64_t loss_chunk_rows() const { return loss_chunk_rows_; }

  // What backward recomputes (train.recompute, as the memory plan decided
  // it): kAlways recomputes each unit whole (ShardedModel::set_recompute);
  // kSelective keeps the units and recomputes each decoder layer's
  // elementwise ops (LayerActivations::kRecomputeElementwise); kNever keeps all.
  void set_recompute(Recompute mode);
  Recompute recompute() const { return recompute_; }

  // Loads full parameters by Hugging Face name (every rank keeps its slices).
  void load_full(const std::map<std::string, torch::Tensor>& parameters) { model_.load_full(parameters); }

  // Forward and backward over this rank's rows of `batch` (rows r, r + N, ...)
  // in micro-batches of `micro_batch` rows; every rank runs the same number of
  // micro-steps (a rank short of rows runs a zero-weight row), so collectives
  // always pair up. The loss is the sum over target tokens divided by the
  // global batch's target count, so per-rank gradients add up to the global
  // mean's, whatever the rank count. Gradients (times `loss_scale`) accumulate
  // into the units' fp32 shards. Returns the global mean loss (unscaled).
  double forward_backward(const TrainBatch& batch, int64_t micro_batch, double loss_scale);

  // Loss of a batch without gradients (all rows on every rank).
  double evaluate(const TrainBatch& batch);

  // The summed token loss and the target count of `batch`, without
  // gradients: each rank runs its rows as forward_backward does (rows r,
  // r + N, ..., in micro-batches of `micro_batch`, the same number of
  // micro-steps on every rank), and both figures are summed over the ranks,
  // so every rank returns the same whatever the rank count (to float rounding).
  struct LossSum {
    double loss = 0;
    int64_t tokens = 0;
  };
  LossSum loss_sum(const TrainBatch& batch, int64_t micro_batch);

  // The training forward's logits (B, T, V) in the compute dtype, without
  // gradients, for every row on every rank: what precision does to the
  // training forward can be compared with a reference (bench/fp16).
  torch::Tensor logits(const torch::Tensor& input_ids);

 private:
  // Runs a unit through the sharding engine on its real (unpadded) elements.
  UnitRunner runner();
  // The forward order up to the final norm, as training runs it (fp32 hidden stream).
  torch::Tensor trunk(const UnitRunner& run, const torch::Tensor& input_ids, const DocumentLayout& documents);
  torch::Tensor micro_loss(const torch::Tensor& input_ids, const torch::Tensor& targets,
                           const DocumentLayout& documents, double normalizer);

  LlamaConfig config_;
  std::vector<UnitLayout> layouts_;
  ShardedModel model_;
  torch::Device device_;
  torch::Tensor inv_freq_;  // (D/2,) fp32, kept on the host: the rotary tables are built there
  int64_t loss_chunk_rows_ = kLossChunkRowsDefault;
  Recompute recompute_ = Recompute::kAlways;  // ShardedModel's default: units recomputed
};

}  // namespace metareuse
