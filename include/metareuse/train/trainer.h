// The training run behind `metareuse train`: loads the model and the
// tokenized dataset, shards the model across ranks, and trains with the
// adaptive epoch plan, writing metrics, checkpoints, and stopping together at
// the time limit or on SIGTERM/SIGUSR1 (exit status 3, resumable).
#pragma once

#include <cstdint>
#include <string>

#include "metareuse/core/config.h"
#include "metareuse/dist/runtime.h"
#include "metareuse/model/config.h"

namespace metareuse {

// Per-rank memory of a training configuration (ZeRO-3 sharding, units
// recomputed in backward).
struct MemoryPlan {
  int64_t parameters = 0;
  int64_t ranks = 1;
  int64_t sharded_state_bytes = 0;   // fp32 master + AdamW moments + fp32 grad shard: 16 B / param / N
  int64_t gathered_units_bytes = 0;  // two units in flight in compute precision, plus one unit's full fp32 gradient
  int64_t activations_checkpointed_bytes = 0;  // unit inputs kept + one layer's recompute
  int64_t activations_full_bytes = 0;          // what keeping every activation would cost instead
  int64_t logits_bytes = 0;          // (micro batch, T, V) logits and their gradient in fp32
  int64_t total_bytes = 0;           // with checkpointed activations
  int64_t device_bytes = 0;          // 0: unknown
  bool fits = true;
};

MemoryPlan plan_memory(const LlamaConfig& model, int64_t ranks, int64_t micro_batch, int64_t sequence_length,
                       const std::string& precision, int64_t device_bytes);
std::string format_plan(const MemoryPlan& plan);

// The model the config names: model.path's config.json, or model.preset
// (with model.vocab_size when set).
LlamaConfig model_config_from(const Config& config);

// Runs training on every rank; returns the exit status (0, or kExitTimeLimit).
int run_training(const Config& config, Runtime& runtime, const std::string& run_folder);

}  // namespace metareuse
