// TrainState: what a checkpoint says about the run it came from, written by
// the trainer into the checkpoint's "meta" attribute (checkpoint.h stores it
// as JSON and adds "world_size") and read back on resume, by export and by
// eval. The one definition of those keys. Torch-free.
//
//   identity (a checkpoint of another identity does not resume):
//     model      the model's config.json (LlamaConfig::to_hf_json)
//     tokenizer  the tokenizer identity ("sentencepiece:<vocab>:<hash>", ...)
//     dataset    {sequences, sequence_length, patterns_hash, tokenizer}
//   where training stands:
//     step                    optimizer steps attempted (the LR schedule's position)
//     adam_steps              steps taken (AdamW's bias correction; fp16 skips do not count)
//     epoch, sampler          the data order (SamplerState)
//     loss_scale, loss_scale_good_steps, loss_scale_hysteresis_left   fp16 loss scaling
//     config                  the resolved config of the run (its train.* keys must
//                             match on resume: check_resume_options)
//     text                    {tokenizer, template}: what the dataset was made with
//                             (tokenizer/prompt_format.h's TextFormat), eval's and
//                             export's default; absent in older checkpoints
//     validation              {best_loss, evaluations_without_improvement}: early
//                             stopping's standing (train.eval_every); absent before
//                             the first evaluation and in older checkpoints
//     world_size              ranks at save time (written by save_checkpoint)
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metareuse/dataset/sampler.h"

namespace metareuse {

struct TrainIdentity {
  nlohmann::json model;  // config.json form
  std::string tokenizer;
  std::int64_t sequences = 0;
  std::int64_t sequence_length = 0;
  std::string patterns_hash = "none";

  // The three identity keys of the checkpoint's meta: model, tokenizer, dataset.
  nlohmann::json to_json() const;
};

struct TrainState {
  TrainIdentity identity;
  std::int64_t step = 0;
  std::int64_t adam_steps = 0;
  std::int64_t epoch = 0;
  SamplerState sampler;
  double loss_scale = 1.0;
  std::int64_t loss_scale_good_steps = 0;
  std::int64_t loss_scale_hysteresis_left = 1;
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json text;          // TextFormat::to_json(); null: not recorded
  // Early stopping's standing: the best validation loss so far (none before
  // the first evaluation) and the evaluations since it last improved.
  std::optional<double> best_validation_loss;
  std::int64_t evaluations_without_improvement = 0;
  std::int64_t world_size = 0;  // 0: not recorded (the trainer does not set it; save_checkpoint does)

  nlohmann::json to_json() const;
  // Reads a checkpoint's meta; a missing or mistyped key throws InputError
  // naming `source` (the checkpoint file) and the key.
  static TrainState from_json(const nlohmann::json& meta, const std::string& source);
};

// Refuses to resume from `saved` (the checkpoint's meta, as stored) into a run
// of identity `current`: InputError naming `path` and the first field that
// differs ("model.hidden_size is 64 in the checkpoint but 128 in this run").
void check_resume_identity(const nlohmann::json& saved, const TrainIdentity& current, const std::string& path);

// The resume rule for training options, the one place it is decided. A resume
// continues the checkpoint's training, so every train.* key and run.seed must
// be the checkpoint's, except those that say how long it goes on, where and in what
// pieces it runs and what it reports (resume_may_change); train.resume itself
// is not compared. `saved_config` is the checkpoint's "config",
// `current_config` this run's (both nested JSON).
// Returns "train.max_steps changed 100 -> 200" for each of those that
// differs, for the log; any other difference throws ConfigError naming `path`,
// each key with both values, and the way out. A key one side lacks (a
// checkpoint of an older build) is not compared.
std::vector<std::string> check_resume_options(const nlohmann::json& saved_config, const nlohmann::json& current_config,
                                              const std::string& path);

// The train.* keys a resume may change (check_resume_options).
const std::vector<std::string>& resume_may_change();

}  // namespace metareuse
