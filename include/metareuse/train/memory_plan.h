// The per-rank memory of a training configuration under ZeRO-3 sharding:
// what `metareuse plan` prints and what validate_training checks (and where
// train.recompute=auto is decided).
#pragma once

#include <cstdint>
#include <string>

#include "metareuse/model/config.h"  // LlamaConfig, Recompute

namespace metareuse {

// Per-rank memory of a training configuration (ZeRO-3 sharding), with units
// recomputed in backward or kept, and the train.recompute choice it implies.
struct MemoryPlan {
  int64_t parameters = 0;
  int64_t ranks = 1;
  int64_t sharded_state_bytes = 0;   // fp32 master + AdamW moments + fp32 grad shard: 16 B / param / N
  int64_t gathered_units_bytes = 0;  // the largest unit's backward: gathered + full gradient (compute) + an fp32 copy
  int64_t activations_checkpointed_bytes = 0;  // unit inputs kept + one layer's recompute
  int64_t activations_full_bytes = 0;          // what keeping every activation would cost instead
  int64_t activations_selective_bytes = 0;     // unit inputs + every layer's matmul and attention outputs
  int64_t logits_bytes = 0;          // the head's backward: gathered embeddings + three fp32 (micro batch, T, V),
                                     // or, chunked, + the head's gradient and one chunk's logits
  int64_t loss_chunk_rows = 0;       // train.loss_chunk_rows; 0: unchunked
  // train.overlap at more than one rank: what the next unit's gather and the
  // previous unit's fp32 gradient (both in flight) add to the largest
  // backward (0 without overlap)
  int64_t overlap_bytes = 0;
  int64_t total_bytes = 0;           // state + the larger of the two backwards + checkpointed activations
  // Without recompute: every unit's gathered parameters and every activation
  // stay until backward (FSDP's reshard_after_forward=false).
  int64_t kept_units_bytes = 0;      // all units gathered in compute precision + one unit's fp32 gradient
  int64_t total_kept_bytes = 0;
  // Selective recompute: units kept as above, each layer's elementwise ops recomputed.
  int64_t total_selective_bytes = 0;
  int64_t device_bytes = 0;          // 0: unknown
  std::string recompute_choice = "auto";  // train.recompute
  Recompute recompute = Recompute::kNever;  // the decision (see plan_memory)
  bool fits = true;                  // the chosen mode's total fits in 90% of device_bytes (or unknown)
};

// The planned total of `mode`: total_kept_bytes, total_selective_bytes or total_bytes.
int64_t planned_total(const MemoryPlan& plan, Recompute mode);

// `recompute`: train.recompute (auto | always | selective | never). auto
// takes the first of never, selective, always whose total fits in 90% of
// `device_bytes` (never when that is 0: nothing limits), always if none does.
// `loss_chunk_rows`: train.loss_chunk_rows (0: the head's logits whole).
// `overlap`: train.overlap (counted only at more than one rank).
MemoryPlan plan_memory(const LlamaConfig& model, int64_t ranks, int64_t micro_batch, int64_t sequence_length,
                       const std::string& precision, int64_t device_bytes, const std::string& recompute,
                       int64_t loss_chunk_rows, bool overlap = true);
std::string format_plan(const MemoryPlan& plan);

}  // namespace metareuse
