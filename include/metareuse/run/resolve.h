// The resolve phase: parse -> derive -> validate, once, before any stage runs.
//
// The config comes in as given (file, --set, flags). Resolving derives what
// the stages share: the tokenizer and its template (the user's, model.path's
// own, or one the run trains), a from-scratch model's vocabulary, the
// dataset, the resume point and every path of the run folder. It then builds
// each stage's typed options from the config, in one place, and their
// builders check every rule that needs no stage output. What comes out is
// const: a stage reads its own options and never writes to the config. The
// resolved config (`config.resolved.json`) is the resolved training's config,
// written by the trainer once training has started, and a stage's
// fingerprint is the xxHash of the config keys its options were built from
// (recorded while they were built).
// `metareuse run`, `train` and `plan` all resolve here, so they apply the same
// rules; training's checks that need the dataset and the ranks are
// validate_training's, which `train`, `run` and `plan` all call.
#pragma once

#include <nlohmann/json.hpp>  // the keys behind each stage's options

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "metareuse/checkpoint/export.h"  // ExportOptions
#include "metareuse/core/config.h"
#include "metareuse/eval/distill.h"        // DistillOptions
#include "metareuse/eval/forward_file.h"   // ForwardFileOptions
#include "metareuse/eval/generate_text.h"  // GenerateTextOptions
#include "metareuse/eval/run_eval.h"      // EvalRunOptions
#include "metareuse/run/data_stages.h"    // the data stages' options
#include "metareuse/run/layout.h"
#include "metareuse/run/run_report.h"   // RunReportOptions
#include "metareuse/train/trainer.h"      // TrainOptions, MemoryPlan

namespace metareuse {

// One training, resolved: the run's model, or the baseline's.
struct ResolvedTraining {
  std::string folder;    // its run folder (the baseline's is <run>/baseline)
  Config config;         // what it trains with: <folder>/config.resolved.json, and every checkpoint's config
  TrainOptions options;  // built from `config`
};

// The sentencepiece tokenizer a run trains on its augmented examples when it
// has none (no tokenizer.path, no model.path tokenizer).
struct TokenizerTraining {
  std::string corpus;          // the augmented examples
  std::string out;             // <run>/tokenizer.model
  std::int64_t vocab_size = 0;  // tokenizer.train_vocab_size: sentencepiece makes exactly this many pieces
  std::string model_type;
};

// Everything `metareuse run` runs, resolved.
struct ResolvedRun {
  explicit ResolvedRun(RunLayout run_layout) : layout(std::move(run_layout)) {}

  RunLayout layout;
  // The config as given with tokenizer.path and tokenizer.template derived:
  // what the data stages and eval read (dataset.h5 records it).
  Config config;
  TextFormat text;
  std::optional<TokenizerTraining> tokenizer_training;  // set: the prepare stage trains the run's tokenizer
  PatternsStageOptions patterns;
  AugmentStageOptions augment;
  PrepareOptions prepare;
  // `config` with the training's derived keys: the vocabulary, the dataset, train.resume=auto.
  ResolvedTraining train;
  std::string checkpoints;  // the checkpoint folder the checkpoint stage verifies
  EvalRunOptions eval;      // eval.questions empty: the eval stage writes only the report
  ExportOptions export_options;
  // experiment.baseline: the baseline's examples, dataset and training (augment mode none, <run>/baseline).
  bool baseline = false;
  AugmentStageOptions baseline_augment;
  PrepareOptions baseline_prepare;
  ResolvedTraining baseline_train;
  // experiment.bc_sft: distill (the teacher's right answers), the student's
  // dataset and training (<run>/student, from the run's starting model).
  bool bc_sft = false;
  DistillOptions distill;
  PrepareOptions student_prepare;
  ResolvedTraining student_train;
  // By stage name: the config keys, with their values, the stage's options were built from.
  std::map<std::string, nlohmann::json> stage_keys;
};

// `metareuse run`: every stage's options. Reads no output of a stage (a tokenizer
// the run trains gets its vocabulary from tokenizer.train_vocab_size). Throws
// ConfigError / UsageError / InputError naming the key or file.
ResolvedRun resolve_run(const Config& given);

// `metareuse train`: the tokenizer and template derived, and the training's options.
ResolvedTraining resolve_training(const Config& given);

// Training's options from a resolved config, in run folder `layout`, for `model`.
TrainOptions training_options(const Config& config, const RunLayout& layout, const LlamaConfig& model);

// The eval stage's options: eval.*, augment.*, tokenizer.*, run.seed. The
// models: eval.model (default: the run's checkpoints, which must hold a
// checkpoint when eval runs), control when eval.control, baseline when
// eval.baseline. The handbook defaults to the run's (used when it exists);
// the contexts to the run's augmented examples; the output folder to the
// run's eval/.
EvalRunOptions eval_run_options(const Config& config, const RunLayout& layout);

// `metareuse eval`: eval_run_options in the config's run folder, except when
// eval.model is a checkpoint kept in another run's checkpoint folder (a bare
// `eval --model runs/x/checkpoints`): then that run is the one evaluated. Its
// folder takes the results (eval.out still wins) and gives the handbook and
// the contexts, and the checkpoint's config gives the prompt settings
// (augment.mode, top_k, bm25_k1, bm25_b) it was trained with; eval.* and
// tokenizer.path stay the given config's. A checkpoint in no run folder needs
// eval.out (UsageError), so no other run's results are overwritten.
EvalRunOptions eval_command_options(const Config& config);

// `metareuse distill` and the run's distill stage: distill.*, corpus.files,
// the teacher's retrieval (augment.mode, .top_k, .bm25_*, the run's handbook
// and, in used mode, its augmented examples), tokenizer.path/.template and
// dataset.sequence_length (longer examples are dropped). The teacher defaults
// to the run's checkpoints; the examples to <run>/distilled.jsonl, with the
// answers and distill.json in distill/ beside them. Checked (check_distill_options).
DistillOptions distill_run_options(const Config& config, const RunLayout& layout);

// `metareuse export`: export.checkpoint, export.out (each: the run's when
// empty), export.dtype and export.max_shard.
ExportOptions export_stage_options(const Config& config, const RunLayout& layout);

// `metareuse forward`: forward.*, checked (check_forward_file_options).
ForwardFileOptions forward_file_options(const Config& config);

// `metareuse generate`: generate.*, tokenizer.path, tokenizer.template and run.seed (a
// temperature of 0 decodes greedily), checked (check_generate_text_options).
GenerateTextOptions generate_text_options(const Config& config);

// `metareuse report`: run.out_dir (the run folder, RunLayout::for_config) and
// report.* (report.out, else the folder's report.html).
RunReportOptions run_report_options(const Config& config);

// `metareuse plan`: the run the config describes, sized for plan.ranks
// (0: `world_size`) and plan.sequence_length (0: dataset.sequence_length)
// with train.device_memory. The model comes from model.path's config.json
// when it is there, else model.preset (plan_model_config), so a user plans
// before downloading weights. The training rules are validate_training's.
struct TrainingPlan {
  std::string model_name;   // model.path, else model.preset
  LlamaConfig model;
  std::string precision;
  std::int64_t micro_batch = 0;
  std::int64_t sequence_length = 0;
  MemoryPlan memory;
};
TrainingPlan plan_training(const Config& config, int world_size);
// The header line and format_plan's table.
std::string format_training_plan(const TrainingPlan& plan);

}  // namespace metareuse
