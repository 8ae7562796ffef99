// The training run behind `metareuse train`: loads the model and the
// tokenized dataset, shards the model across ranks, and trains with the
// adaptive epoch plan, writing metrics, checkpoints, and stopping together at
// the time limit or on SIGTERM/SIGUSR1 (exit status 3, resumable). With
// train.eval_every it measures the loss on the dataset's validation sequences,
// and with train.early_stop_patience it ends training (exit 0) when that loss
// stops improving.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/core/config.h"  // the resolved config, kept in every checkpoint and written once training starts
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/chunked_loss.h"      // kLossChunkRowsDefault
#include "metareuse/model/config.h"
#include "metareuse/parallel/sharded_llama.h"  // TrainBatch
#include "metareuse/train/memory_plan.h"       // MemoryPlan, validate_training's verdict
#include "metareuse/train/optimizer.h"

namespace metareuse {

struct PackedDataset;

// The rows `sequences` of a tokenized dataset as a training batch: ids,
// next-token targets (loss mask, never across a document boundary), and each
// row's document layout (positions, segment ids), which ShardedLlama uses to
// mask packed documents apart and to cut padding per micro-batch.
TrainBatch train_batch_of(const PackedDataset& data, const std::vector<int64_t>& sequences);

// The compute dtype of train.precision (fp32, bf16 or fp16).
torch::ScalarType compute_dtype(const std::string& precision);

// Everything training reads, typed and resolved once (run/resolve.h builds it
// from the config; train/model_from_config.h gives the model). run_training
// reads no config key and names no file of a run folder: every path is here.
struct TrainOptions {
  LlamaConfig model;                // model_config_from(config)
  std::string model_path;           // model.path: weights to start from; "" = init_weights(seed)
  std::string tokenizer_path;       // tokenizer.path, recorded with the dataset's template in every
                                    // checkpoint ("text": eval and export read it, prompt_format.h)
  std::uint64_t seed = 0;           // run.seed: initialisation and the sampler's order
  std::string dataset_path;         // dataset.output, or <run folder>/dataset.h5
  std::string precision = "fp32";   // fp32 | bf16 | fp16
  std::string device = "auto";      // auto | cpu | cuda
  std::int64_t device_bytes = 0;    // train.device_memory; 0: unknown
  std::int64_t global_batch = 8;
  std::int64_t micro_batch = 2;
  std::string recompute = "auto";   // train.recompute: auto | always | selective | never (decided by plan_memory)
  bool overlap = true;              // train.overlap: communication overlapped with compute (parallel/fsdp.h)
  std::int64_t loss_chunk_rows = kLossChunkRowsDefault;  // train.loss_chunk_rows; 0: the head's logits whole
  EpochPolicy epoch_policy;
  std::int64_t epochs = 0;          // > 0 overrides the policy
  std::int64_t max_steps = 0;       // > 0 caps the plan
  std::int64_t max_bad_steps = 3;   // consecutive non-finite steps (no loss scaling) before training stops
  AdamWConfig adamw;                // decay_policy: train.weight_decay_policy
  double grad_clip = 1.0;
  std::string lr_schedule = "cosine";
  std::int64_t warmup_steps = 0;
  double lr_min = 0.0;
  LossScalerConfig loss_scaling;    // enabled for fp16
  CheckpointOptions checkpoints;
  std::string resume;               // "", "auto", a folder or a file
  double time_limit = 0.0;          // seconds per rank; 0: none
  double job_end = 0.0;             // the Slurm job's end (SLURM_JOB_END_TIME), epoch seconds; 0: none
  double job_end_margin = 120.0;    // train.job_end_margin: training stops this long before job_end
  double checkpoint_every_minutes = 0.0;
  std::int64_t checkpoint_every_steps = 0;
  std::int64_t eval_every = 0;             // train.eval_every: validation loss every N steps and at the end; 0: off
  std::int64_t early_stop_patience = 0;    // evaluations without improvement before training ends; 0: off
  double early_stop_min_delta = 0.0;       // the least drop below the best loss that is an improvement
  std::int64_t log_every = 10;
  std::string progress = "auto";    // auto | bar | lines
  std::string metrics_path;         // metrics.jsonl, written by rank 0 (appended to on resume)
  Config resolved_config;           // saved in every checkpoint
  // config.resolved.json: resolved_config, written by rank 0 once training has
  // started (its checks passed, the checkpoint resumed), so the file holds what
  // a training really used and never a refused or failed config. "": not written.
  std::string config_path;
};

// The checks that need the dataset and the rank count, in one place, before
// anything large is allocated: precision against the device, the batch sizes,
// and the memory plan (which also decides train.recompute). Throws
// ConfigError or InputError naming the key or the file; returns the plan.
MemoryPlan validate_training(const TrainOptions& options, const std::string& device_type, std::int64_t sequence_length,
                             int world_size);

// The rules of evaluation and early stopping, in one place: early stopping
// needs train.eval_every, and train.eval_every needs validation sequences.
// `validation_sequences`: what the dataset holds (or will hold); `dataset`
// names it in the message. Throws ConfigError naming the keys.
void check_evaluation_options(const TrainOptions& options, std::int64_t validation_sequences,
                              const std::string& dataset);

// Early stopping's rule: `loss` improves on `best` (none before the first
// evaluation) when it is below best - min_delta. A loss that is not finite
// never improves.
bool improves_on(double loss, const std::optional<double>& best, double min_delta);

// Runs training on every rank; returns the exit status (0, or kExitTimeLimit).
int run_training(const TrainOptions& options, Runtime& runtime);

}  // namespace metareuse
