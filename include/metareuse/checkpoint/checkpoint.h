// HDF5 checkpoints of a sharded training run. Rank 0 writes; every rank
// reads its own slices back, so a checkpoint saved at N ranks resumes at M.
//
// File layout (format "metareuse-checkpoint", version 1):
//   /                       attributes "magic", "format_version", "meta" (JSON:
//                           the trainer's TrainState, metareuse/train/train_state.h,
//                           which defines its keys; save_checkpoint adds
//                           "world_size")
//   /params/<HF name>       fp32 master weights, full shape
//   /<state>/<HF name>      the optimizer's state, one group per ShardState it
//                           hands over, under its name (AdamW, train/optimizer.h:
//                           /exp_avg and /exp_avg_sq), full shape
//   /rng/rank_<r>           uint8, rank r's torch generator state
//
// Writing is atomic: rank 0 writes `<name>.tmp`, fsyncs, renames it to
// `ckpt-<step>.h5`, fsyncs the folder, then rewrites the `latest` pointer the
// same way. A crash at any moment leaves the previous checkpoint complete.
#pragma once

#include <nlohmann/json.hpp>  // metadata

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/parallel/fsdp.h"

namespace metareuse {

inline constexpr const char* kCheckpointMagic = "metareuse-checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;

struct CheckpointOptions {
  std::string dir;                 // folder holding ckpt-*.h5 and `latest`
  int64_t keep_last = 3;           // complete checkpoints kept (0: all)
  int64_t max_total_bytes = 0;     // cap on the folder's checkpoints (0: none); the newest is always kept
  int compression = 0;             // gzip level 0-9 (0: none)
  // For tests of a slow filesystem: rank 0 sleeps this long in each of its
  // write steps. 0 (no delay) in every real run.
  double test_write_delay_seconds = 0.0;
};

// How long the other ranks wait for each of rank 0's write steps (creating
// the file, one unit's tensors, completing it with flush, fsync and rename,
// retention), outside the collective watchdog. Generous on purpose: a slow or
// busy shared filesystem is not a hang. A rank 0 that dies ends the job at
// once (the launcher); this bounds only a rank 0 stuck alive, e.g. in a hung
// network filesystem, and the scheduler's time limit may come first.
inline constexpr double kCheckpointWriterWaitSeconds = 6 * 3600.0;

struct SaveResult {
  bool ok = false;
  std::string path;     // the new checkpoint, when ok
  std::string message;  // why not, when !ok (e.g. disk full); the previous checkpoint is intact
  double seconds = 0.0;
};

// Collective: every rank calls it with its shards: the model's master weights
// and the optimizer's `optimizer` state (e.g. AdamW::state()). Units are
// gathered one at a time (streaming), so rank 0 never holds more than one unit
// beyond its own shard. While rank 0 writes, the other ranks wait outside the
// collective watchdog (kCheckpointWriterWaitSeconds), so a slow filesystem
// does not trip dist.collective_timeout; every gather starts with all ranks. `meta` is stored as JSON; `rng_state` is this rank's
// generator state. On a write failure (disk full, permissions) nothing is
// renamed, the temporary file is removed, and every rank gets ok = false.
SaveResult save_checkpoint(ShardedModel& model, const std::vector<ShardState>& optimizer, const nlohmann::json& meta,
                           const std::vector<uint8_t>& rng_state, const CheckpointOptions& options);

// Resolves "auto" (the folder's `latest`; "" when there is none), a folder
// (its `latest`; an error when missing), or a file path.
std::string resolve_checkpoint(const std::string& spec, const std::string& dir);

// Reads and checks magic, version and metadata. Errors name the file.
nlohmann::json read_checkpoint_meta(const std::string& path);

// Collective: loads master weights into every unit's shards and each
// `optimizer` state from its group (any world size; a missing tensor is an
// error naming it), and returns the metadata. `rng_state` receives this rank's
// saved generator state when the world size matches (else it is cleared).
nlohmann::json load_checkpoint(const std::string& path, ShardedModel& model, const std::vector<ShardState>& optimizer,
                               std::vector<uint8_t>* rng_state);

// Reads the fp32 parameters only (no sharding), for export and evaluation.
std::map<std::string, torch::Tensor> read_checkpoint_params(const std::string& path);

// Reads every tensor of the checkpoint (parameters, optimizer state, RNG
// states); HDF5 checks each chunk's Fletcher32 checksum as it reads, and a
// mismatch throws naming the tensor. `checksummed` counts the tensors that
// carry a checksum (older checkpoints have none): only when it equals
// `tensors` has the file been verified.
struct CheckpointVerification {
  std::int64_t tensors = 0;
  std::int64_t checksummed = 0;
  bool verified() const { return tensors > 0 && checksummed == tensors; }
};
CheckpointVerification verify_checkpoint(const std::string& path);

}  // namespace metareuse
