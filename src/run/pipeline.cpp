// The stage table and the loop that runs it (pipeline.h).
#include "metareuse/run/pipeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <vector>

#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/checkpoint/export.h"
#include "metareuse/core/config.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/eval/report.h"
#include "metareuse/eval/run_eval.h"
#include "metareuse/patterns/strategist.h"  // reflect mode's model
#include "metareuse/run/data_stages.h"
#include "metareuse/run/layout.h"
#include "metareuse/run/lock.h"
#include "metareuse/run/timings.h"
#include "metareuse/tokenizer/prompt_format.h"
#include "metareuse/tokenizer/sentencepiece.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "metareuse/train/train_state.h"
#include "metareuse/train/trainer.h"

namespace metareuse {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// SIGUSR1 outside training (Slurm's pre-timeout signal landing in eval, say):
// the running stage finishes, then the pipeline stops with kExitTimeLimit so
// the job is requeued and resumes at the next stage. Training has its own
// handler (it stops within a step and checkpoints). SIGTERM keeps its default
// action outside training, so scancel still ends a job at once.
std::atomic<int> g_pipeline_signal{0};
extern "C" void on_pipeline_signal(int signal_number) { g_pipeline_signal.store(signal_number); }

using StageFunction = std::function<int(Config& config, Runtime& runtime, const RunLayout& layout)>;

struct Stage {
  const char* name;
  std::vector<std::string> sections;  // config sections its output depends on
  std::vector<std::string> inputs;    // files (relative to the run folder) it reads
  std::vector<std::string> outputs;   // files it writes
  StageFunction run;                  // returns an exit status
  bool reads_corpus = false;          // corpus.files are inputs too
};

int patterns_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  if (patterns_stage(config, runtime, layout.handbook(), make_model_strategist) != kExitOk) {
    throw InputError("patterns: corpus.strict is set and the corpus has bad lines");
  }
  return kExitOk;
}

int augment_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  if (augment_stage(config, runtime, layout.handbook(), layout.augmented()) != kExitOk) {
    throw InputError("augment: corpus.strict is set and the corpus has bad lines");
  }
  return kExitOk;
}

// The run's tokenizer and template, decided once for every stage
// (training_text_format: the user's, else model.path's own); a run without
// either tokenizer uses one trained here on the augmented examples
// (tokenizer.model). Written into the config, so the resolved config and every
// later stage see them.
void resolve_run_text(Config& config, const RunLayout& layout) {
  TextFormat text = training_text_format(config);
  if (text.tokenizer.empty()) text.tokenizer = layout.tokenizer();
  config.set("tokenizer.path", text.tokenizer);
  config.set("tokenizer.template", text.template_name);
}

// Trains the run's own tokenizer when the run uses it (no tokenizer.path, no model.path tokenizer).
void ensure_tokenizer(const Config& config, Runtime& runtime, const RunLayout& layout) {
  if (config.get_string("tokenizer.path") != layout.tokenizer()) return;
  if (runtime.rank() == 0) {
    train_sentencepiece_on_corpus(layout.augmented(), layout.tokenizer(), config.get_int("tokenizer.train_vocab_size"),
                                  config.get_string("tokenizer.train_model_type"));
  }
  runtime.world().barrier();
}

int prepare_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  ensure_tokenizer(config, runtime, layout);
  return prepare_stage(config, runtime, layout.augmented(), layout.dataset());
}

int train_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  if (config.get_string("model.path").empty() && config.get_int("model.vocab_size") == 0) {
    // A from-scratch model gets exactly the tokenizer's vocabulary.
    config.set("model.vocab_size", load_tokenizer(config.get_string("tokenizer.path"))->vocab_size());
  }
  config.set("dataset.output", layout.dataset());
  // A train stage that stopped early (time limit, signal) resumes from its checkpoint.
  if (config.get_string("train.resume").empty()) config.set("train.resume", "auto");
  // The resolved config records what the run derived (tokenizer, vocabulary,
  // dataset), so `metareuse train --config <run>/config.resolved.json` works as is.
  if (runtime.rank() == 0) config.write(layout.resolved_config());
  return run_training(TrainOptions::from_config(config, layout.folder()), runtime, layout.folder());
}

// Verifies that the final checkpoint is complete and loadable.
int checkpoint_step(Config& config, Runtime&, const RunLayout& layout) {
  std::string latest = resolve_checkpoint(layout.checkpoint_folder(config), "");
  const TrainState state = TrainState::from_json(read_checkpoint_meta(latest), latest);
  CheckpointVerification check = verify_checkpoint(latest);
  if (check.verified()) {
    log_info("checkpoint {} verified: {} tensors read, every Fletcher32 checksum matches; step {}, saved at {} rank(s)",
              latest, check.tensors, state.step, state.world_size);
  } else {
    log_warn("checkpoint {}: {} tensors read, but only {} carry a checksum (written by an older build), so it is "
              "NOT verified; step {}", latest, check.tensors, check.checksummed, state.step);
  }
  return kExitOk;
}

// The baseline's own config: the run's, with its data and checkpoints in
// <run>/baseline and no patterns in its examples.
Config baseline_config(const Config& config, const RunLayout& layout) {
  Config baseline = config;
  baseline.set("augment.mode", "none");
  baseline.set("dataset.output", layout.baseline().dataset());
  baseline.set("checkpoint.dir", layout.baseline().checkpoints());
  return baseline;
}

// The baseline's examples (the corpus without patterns), tokenized with the run's tokenizer.
int baseline_data_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  Config baseline = baseline_config(config, layout);
  if (augment_stage(baseline, runtime, layout.handbook(), layout.baseline_examples()) != kExitOk) {
    throw InputError("baseline: corpus.strict is set and the corpus has bad lines");
  }
  return prepare_stage(baseline, runtime, layout.baseline_examples(), layout.baseline().dataset());
}

// The baseline model: the train stage's settings on the baseline's dataset.
int baseline_train_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  Config baseline = baseline_config(config, layout);
  return train_step(baseline, runtime, layout.baseline());
}

// Evaluates the trained model (and eval.baseline, when set) on eval.questions,
// then writes <run>/report.html. With experiment.baseline: the three entries.
int eval_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  if (config.get_string("eval.questions").empty()) {
    log_warn("eval: no eval.questions in the config; nothing to evaluate (the report has no eval table)");
  } else {
    EvalRunOptions options = eval_run_options(config, layout);
    if (config.get_bool("experiment.baseline")) {
      const std::string model = options.models.front().path;
      options.models = {{"baseline", layout.baseline().checkpoints(), false}, {"reuse", model, true},
                        {"control", model, false}};
    }
    run_evaluation(options, runtime.world());
  }
  if (runtime.rank() != 0) return kExitOk;
  write_report(report_inputs_for_run(layout.folder()), layout.report());
  log_info("wrote {}", layout.report());
  return kExitOk;
}

int export_step(Config& config, Runtime& runtime, const RunLayout& layout) {
  if (runtime.rank() != 0) return kExitOk;
  ExportOptions options;
  options.checkpoint = layout.checkpoint_folder(config);
  options.out = layout.export_folder();
  options.dtype = ExportDtype::kFloat32;  // shards of at most ExportOptions' 5 GB
  export_checkpoint(options);
  return kExitOk;
}

std::vector<Stage> pipeline_stages(const Config& config) {
  std::vector<Stage> stages = {
      {"patterns", {"corpus", "patterns"}, {}, {RunFile::kHandbook}, patterns_step, true},
      {"augment", {"corpus", "augment"}, {RunFile::kHandbook}, {RunFile::kAugmented}, augment_step, true},
      {"prepare", {"tokenizer", "dataset"}, {RunFile::kAugmented}, {RunFile::kDataset}, prepare_step},
      {"train", {"model", "train", "checkpoint", "run"}, {RunFile::kDataset}, {RunFile::kLatestCheckpoint}, train_step},
      {"checkpoint", {}, {RunFile::kLatestCheckpoint}, {}, checkpoint_step},
      {"eval", {"eval", "augment", "experiment"}, {RunFile::kLatestCheckpoint}, {RunFile::kReport}, eval_step},
      {"export", {}, {RunFile::kLatestCheckpoint}, {RunFile::kExportConfig}, export_step},
  };
  if (config.get_bool("experiment.baseline")) {
    // After the run's own model, before eval, which compares the two.
    auto eval = std::find_if(stages.begin(), stages.end(), [](const Stage& s) { return std::string(s.name) == "eval"; });
    eval->inputs.push_back(RunFile::kBaselineLatestCheckpoint);
    stages.insert(eval, {{"baseline-data", {"corpus", "tokenizer", "dataset", "experiment"},
                          {RunFile::kHandbook, RunFile::kDataset}, {RunFile::kBaselineDataset}, baseline_data_step, true},
                         {"baseline-train", {"model", "train", "checkpoint", "run", "experiment"},
                          {RunFile::kBaselineDataset}, {RunFile::kBaselineLatestCheckpoint}, baseline_train_step}});
  }
  return stages;
}

// Config sections, the corpus files and the stage's inputs (size and mtime).
std::string fingerprint(const Stage& stage, const Config& config, const RunLayout& layout) {
  json parts = json::object();
  for (const auto& section : stage.sections) {
    if (config.tree().contains(section)) parts["config"][section] = config.tree().at(section);
  }
  std::vector<std::string> files;
  for (const auto& input : stage.inputs) files.push_back(layout.path(input.c_str()));
  if (stage.reads_corpus) {
    for (const auto& corpus_file : config.get_string_list("corpus.files")) files.push_back(corpus_file);
  }
  for (const auto& path : files) {
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    auto time = fs::last_write_time(path, ec).time_since_epoch().count();
    parts["files"][path] = ec ? json(nullptr) : json::array({size, time});
  }
  return fmt::format("{:016x}", std::hash<std::string>{}(parts.dump()));
}

void check_stage_names(const std::vector<Stage>& stages, const PipelineOptions& options) {
  for (const std::string& name : {options.from, options.only}) {
    if (name.empty()) continue;
    bool known = std::any_of(stages.begin(), stages.end(), [&](const Stage& s) { return name == s.name; });
    if (!known) {
      std::vector<std::string> names;
      for (const Stage& s : stages) names.push_back(s.name);
      throw UsageError(fmt::format("unknown stage '{}' ({})", name, fmt::join(names, ", ")));
    }
  }
}

// <run>/stages.json: each finished stage's fingerprint, by stage name.
json read_stage_record(const std::string& path) {
  json record = json::object();
  if (std::ifstream in(path); in) record = json::parse(in, nullptr, false);
  if (record.is_discarded()) record = json::object();
  return record;
}

// True when the stage's outputs exist and its fingerprint is the recorded one,
// as rank 0 sees the folder (every rank decides the same).
bool stage_up_to_date(const Stage& stage, const std::string& print, const json& record, const RunLayout& layout,
                      Runtime& runtime) {
  bool outputs_exist = std::all_of(stage.outputs.begin(), stage.outputs.end(),
                                   [&](const std::string& f) { return fs::exists(layout.path(f.c_str())); });
  bool up_to_date = outputs_exist && record.value(stage.name, "") == print;
  return runtime.world().allreduce_value<std::int32_t>(runtime.rank() == 0 && up_to_date ? 1 : 0, ReduceOp::kMax) != 0;
}

}  // namespace

int run_pipeline(Config& config, Runtime& runtime, const PipelineOptions& options) {
  g_pipeline_signal.store(0);
  std::signal(SIGUSR1, on_pipeline_signal);
  const RunLayout layout = RunLayout::for_config(config);
  const std::vector<Stage> stages = pipeline_stages(config);
  check_stage_names(stages, options);
  // Fingerprints come from the config as given: stages fill in keys for later
  // ones (tokenizer.path and .template, model.vocab_size, train.resume), which
  // must not make a later stage look changed on the next run, when the filling
  // stage is skipped.
  const Config given = config;
  resolve_run_text(config, layout);
  RunFolderLock lock;  // one job per run folder (rank 0 holds it for the job)
  if (runtime.rank() == 0) {
    lock = RunFolderLock(layout.lock());
    config.write(layout.resolved_config());
  }
  runtime.world().barrier();
  log_info("run folder {} (resolved config in {}), {} rank(s)", layout.folder(), RunFile::kResolvedConfig,
            runtime.world_size());
  json record = read_stage_record(layout.stages());

  bool forced = false;
  bool ran_any = false;
  for (const auto& stage : stages) {
    if (!options.only.empty() && options.only != stage.name) continue;
    // The trainer resets SIGUSR1 to its default when it ends: catch it again.
    std::signal(SIGUSR1, on_pipeline_signal);
    int stop_signal = runtime.world().allreduce_value<std::int32_t>(g_pipeline_signal.load(), ReduceOp::kMax);
    if (stop_signal != 0) {
      log_warn("signal {} received; stopping before stage {} (exit status {}); `metareuse run` again resumes here",
                stop_signal, stage.name, static_cast<int>(kExitTimeLimit));
      return kExitTimeLimit;
    }
    if (options.from == stage.name) forced = true;
    std::string print = fingerprint(stage, given, layout);
    bool may_skip = !forced && options.only.empty();
    if (stage_up_to_date(stage, print, record, layout, runtime) && may_skip) {
      log_info("stage {:<10} up to date, skipped", stage.name);
      continue;
    }
    Stopwatch watch;
    log_info("stage {:<10} running", stage.name);
    int status = stage.run(config, runtime, layout);
    if (status != kExitOk) {
      log_warn("stage {} stopped with status {}; `metareuse run` again resumes here", stage.name, status);
      return status;
    }
    const double seconds = watch.seconds();
    log_info("stage {:<10} done in {:.2f} s", stage.name, seconds);
    if (runtime.rank() == 0) {
      record[stage.name] = print;
      write_file_atomic(layout.stages(), record.dump(2) + "\n");
      Timings timings = read_timings(layout.timings()).timings;
      timings.record(stage.name, seconds, utc_now("%Y-%m-%dT%H:%M:%SZ"));
      write_timings(timings, layout.timings());
    }
    forced = true;  // a stage that ran makes every later one run
    ran_any = true;
  }
  // The report was written inside the eval stage; written again now, it also
  // shows the times of the eval and export stages.
  if (runtime.rank() == 0 && fs::exists(layout.report()) && ran_any) {
    write_report(report_inputs_for_run(layout.folder()), layout.report());
  }
  return kExitOk;
}

int train_in_run_folder(const Config& given, Runtime& runtime) {
  const RunLayout layout = RunLayout::for_config(given);
  // The resolved config records the tokenizer and template (the checkpoints record them too).
  Config config = given;
  const TextFormat text = training_text_format(config);
  config.set("tokenizer.path", text.tokenizer);
  config.set("tokenizer.template", text.template_name);
  RunFolderLock lock;  // one job per run folder (rank 0 holds it for the job)
  if (runtime.rank() == 0) {
    lock = RunFolderLock(layout.lock());
    config.write(layout.resolved_config());
  }
  // No rank touches the folder before rank 0 holds the lock: when it is held
  // elsewhere, rank 0's error ends the job while the others wait here.
  runtime.world().barrier();
  return run_training(TrainOptions::from_config(config, layout.folder()), runtime, layout.folder());
}

}  // namespace metareuse
