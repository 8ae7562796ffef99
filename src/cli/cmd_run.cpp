// metareuse run: the pipeline, stage by stage, in one run folder:
//   patterns -> augment -> prepare (a sentencepiece tokenizer is trained on the
//   augmented examples when tokenizer.path is empty) -> train -> checkpoint
//   (the final checkpoint is verified) -> eval -> export.
// Each finished stage records a fingerprint of its config sections and input
// files in <run>/stages.json; a later run skips a stage whose fingerprint and
// outputs are unchanged, so re-running after a stop resumes the pipeline.
// With experiment.baseline (#10) the run also trains a baseline from scratch
// on the unaugmented corpus (augment mode none, the run's tokenizer, the same
// model, steps, batch and seed) in <run>/baseline, and eval writes three
// entries: baseline, reuse (the run's model prompted with patterns) and
// control (the same model prompted without them).
// Stages that are not built yet are listed; the run then exits with
// kExitNotBuilt so no one mistakes a partial pipeline for a finished one.
#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <vector>

#include "commands.h"
#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/eval/report.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "metareuse/train/trainer.h"

namespace metareuse::cli {
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

struct RunFlags {
  std::string from;
  std::string only;
};
RunFlags g_run;

struct Stage {
  const char* name;
  int issue;                          // the issue that builds it
  std::vector<std::string> sections;  // config sections its output depends on
  std::vector<std::string> inputs;    // files (relative to the run folder) it reads
  std::vector<std::string> outputs;   // files it writes
  // Returns an exit status; empty: not built.
  std::function<int(CommandContext&, const std::string& folder)> run;
  bool reads_corpus = false;  // corpus.files are inputs too
};

int patterns_stage(CommandContext& context, const std::string& folder) {
  if (patterns_execute(context, folder + "/handbook.json") != kExitOk) {
    throw InputError("patterns: corpus.strict is set and the corpus has bad lines");
  }
  return kExitOk;
}

int augment_stage(CommandContext& context, const std::string& folder) {
  if (augment_execute(context, folder + "/handbook.json", folder + "/augmented.jsonl") != kExitOk) {
    throw InputError("augment: corpus.strict is set and the corpus has bad lines");
  }
  return kExitOk;
}

// The run's tokenizer: tokenizer.path, or one trained here on the augmented
// examples (for from-scratch models).
std::string ensure_tokenizer(CommandContext& context, const std::string& folder) {
  std::string path = context.config.get_string("tokenizer.path");
  if (!path.empty()) return path;
  path = folder + "/tokenizer.model";
  if (context.runtime.rank() == 0) train_tokenizer(context, folder + "/augmented.jsonl", path);
  context.runtime.world().barrier();
  return path;
}

int prepare_stage(CommandContext& context, const std::string& folder) {
  context.config.set("tokenizer.path", ensure_tokenizer(context, folder));
  return prepare_execute(context, folder + "/augmented.jsonl", folder + "/dataset.h5");
}

int train_stage(CommandContext& context, const std::string& folder) {
  Config& config = context.config;
  if (config.get_string("tokenizer.path").empty()) config.set("tokenizer.path", folder + "/tokenizer.model");
  if (config.get_string("model.path").empty() && config.get_int("model.vocab_size") == 0) {
    // A from-scratch model gets exactly the tokenizer's vocabulary.
    config.set("model.vocab_size", load_tokenizer(config.get_string("tokenizer.path"))->vocab_size());
  }
  config.set("dataset.output", folder + "/dataset.h5");
  // A train stage that stopped early (time limit, signal) resumes from its checkpoint.
  if (config.get_string("train.resume").empty()) config.set("train.resume", "auto");
  return run_training(TrainOptions::from_config(config, folder), context.runtime, folder);
}

// Verifies that the final checkpoint is complete and loadable.
int checkpoint_stage(CommandContext& context, const std::string& folder) {
  std::string latest = resolve_checkpoint(checkpoint_folder(context.config, folder), "");
  json meta = read_checkpoint_meta(latest);
  read_checkpoint_params(latest);
  log::info("checkpoint {} verified: step {}, saved at {} rank(s)", latest, meta.value("step", 0),
            meta.value("world_size", 0));
  return kExitOk;
}

// The baseline's own config: the run's, with its data and checkpoints in
// <run>/baseline and no patterns in its examples.
Config baseline_config(const Config& config, const std::string& folder) {
  Config baseline = config;
  baseline.set("augment.mode", "none");
  baseline.set("dataset.output", folder + "/baseline/dataset.h5");
  baseline.set("checkpoint.dir", folder + "/baseline/checkpoints");
  if (baseline.get_string("tokenizer.path").empty()) baseline.set("tokenizer.path", folder + "/tokenizer.model");
  return baseline;
}

// The baseline's examples (the corpus without patterns), tokenized with the run's tokenizer.
int baseline_data_stage(CommandContext& context, const std::string& folder) {
  Config config = baseline_config(context.config, folder);
  CommandContext baseline{config, context.runtime};
  if (augment_execute(baseline, folder + "/handbook.json", folder + "/baseline/examples.jsonl") != kExitOk) {
    throw InputError("baseline: corpus.strict is set and the corpus has bad lines");
  }
  return prepare_execute(baseline, folder + "/baseline/examples.jsonl", folder + "/baseline/dataset.h5");
}

// The baseline model: the train stage's settings on the baseline's dataset.
int baseline_train_stage(CommandContext& context, const std::string& folder) {
  Config config = baseline_config(context.config, folder);
  CommandContext baseline{config, context.runtime};
  return train_stage(baseline, folder + "/baseline");
}

// Evaluates the trained model (and eval.baseline, when set) on eval.questions,
// then writes <run>/report.html. With experiment.baseline: the three entries.
int eval_stage(CommandContext& context, const std::string& folder) {
  Config& config = context.config;
  if (config.get_string("tokenizer.path").empty()) config.set("tokenizer.path", folder + "/tokenizer.model");
  std::string questions = config.get_string("eval.questions");
  if (questions.empty()) {
    log::warn("eval: no eval.questions in the config; nothing to evaluate (the report has no eval table)");
  } else {
    std::string model = config.get_string("eval.model");
    if (model.empty()) model = checkpoint_folder(config, folder);
    std::string out = config.get_string("eval.out");
    if (out.empty()) out = folder + "/eval";
    int status = kExitOk;
    if (config.get_bool("experiment.baseline")) {
      std::vector<EvalEntry> entries = {
          {"baseline", folder + "/baseline/checkpoints", false},
          {"reuse", model, true},
          {"control", model, false},
      };
      status = eval_entries_execute(context, entries, questions, out);
    } else {
      status = eval_execute(context, model, config.get_string("eval.baseline"), questions, out);
    }
    if (status != kExitOk) return status;
  }
  if (context.runtime.rank() != 0) return kExitOk;
  return report_execute(context, folder, folder + "/report.html");
}

int export_stage(CommandContext& context, const std::string& folder) {
  if (context.runtime.rank() != 0) return kExitOk;
  return export_execute(checkpoint_folder(context.config, folder), folder + "/export", "fp32", "5GB");
}

std::vector<Stage> pipeline_stages(const Config& config) {
  std::vector<Stage> stages = {
      {"patterns", 3, {"corpus", "patterns"}, {}, {"handbook.json"}, patterns_stage, true},
      {"augment", 3, {"corpus", "augment"}, {"handbook.json"}, {"augmented.jsonl"}, augment_stage, true},
      {"prepare", 4, {"tokenizer", "dataset"}, {"augmented.jsonl"}, {"dataset.h5"}, prepare_stage},
      {"train", 6, {"model", "train", "checkpoint", "run"}, {"dataset.h5"}, {"checkpoints/latest"}, train_stage},
      {"checkpoint", 7, {}, {"checkpoints/latest"}, {}, checkpoint_stage},
      {"eval", 8, {"eval", "augment", "experiment"}, {"checkpoints/latest"}, {"report.html"}, eval_stage},
      {"export", 7, {}, {"checkpoints/latest"}, {"export/config.json"}, export_stage},
  };
  if (config.get_bool("experiment.baseline")) {
    // After the run's own model, before eval, which compares the two.
    auto eval = std::find_if(stages.begin(), stages.end(), [](const Stage& s) { return std::string(s.name) == "eval"; });
    eval->inputs.push_back("baseline/checkpoints/latest");
    stages.insert(eval, {{"baseline-data", 10, {"corpus", "tokenizer", "dataset", "experiment"}, {"handbook.json", "dataset.h5"},
                          {"baseline/dataset.h5"}, baseline_data_stage, true},
                         {"baseline-train", 10, {"model", "train", "checkpoint", "run", "experiment"},
                          {"baseline/dataset.h5"}, {"baseline/checkpoints/latest"}, baseline_train_stage}});
  }
  return stages;
}

// Config sections, the corpus files and the stage's inputs (size and mtime).
std::string fingerprint(const Stage& stage, const Config& config, const std::string& folder) {
  json parts = json::object();
  for (const auto& section : stage.sections) {
    if (config.tree().contains(section)) parts["config"][section] = config.tree().at(section);
  }
  std::vector<std::string> files = stage.inputs;
  for (auto& file : files) file = folder + "/" + file;
  if (stage.reads_corpus) {
    for (const auto& file : config.get_string_list("corpus.files")) files.push_back(file);
  }
  for (const auto& file : files) {
    std::error_code ec;
    auto size = fs::file_size(file, ec);
    auto time = fs::last_write_time(file, ec).time_since_epoch().count();
    parts["files"][file] = ec ? json(nullptr) : json::array({size, time});
  }
  return fmt::format("{:016x}", std::hash<std::string>{}(parts.dump()));
}

// <run>/timings.json: {"stages": {name: {"seconds", "finished", "sequence"}}},
// the last time each stage ran (a skipped stage keeps its entry; sequence
// orders them); report.html shows it.
void record_stage_time(const std::string& path, const std::string& stage, double seconds) {
  json timings = json::object();
  if (std::ifstream in(path); in) timings = json::parse(in, nullptr, false);
  if (!timings.is_object() || !timings.contains("stages") || !timings["stages"].is_object()) {
    timings = json{{"stages", json::object()}};
  }
  std::int64_t sequence = 0;
  for (const auto& entry : timings["stages"]) {
    if (entry.is_object()) sequence = std::max<std::int64_t>(sequence, entry.value("sequence", 0));
  }
  timings["stages"][stage] = json{{"seconds", seconds}, {"finished", utc_now("%Y-%m-%dT%H:%M:%SZ")}, {"sequence", sequence + 1}};
  std::ofstream(path, std::ios::trunc) << timings.dump(2) << "\n";
}

}  // namespace

void run_options(CLI::App& app, std::vector<std::string>&) {
  app.add_option("--from", g_run.from, "Run from this stage on, even if its outputs are up to date");
  app.add_option("--only", g_run.only, "Run only this stage");
}

int run_run(CommandContext& context) {
  g_pipeline_signal.store(0);
  std::signal(SIGUSR1, on_pipeline_signal);
  const std::string folder = run_folder(context.config);
  auto stages = pipeline_stages(context.config);
  for (const std::string& name : {g_run.from, g_run.only}) {
    if (name.empty()) continue;
    bool known = std::any_of(stages.begin(), stages.end(), [&](const Stage& s) { return name == s.name; });
    if (!known) {
      std::vector<std::string> names;
      for (const Stage& s : stages) names.push_back(s.name);
      throw UsageError(fmt::format("unknown stage '{}' ({})", name, fmt::join(names, ", ")));
    }
  }
  if (context.runtime.rank() == 0) {
    fs::create_directories(folder);
    context.config.write(folder + "/config.resolved.json");
  }
  context.runtime.world().barrier();
  log::info("run folder {} (resolved config in config.resolved.json), {} rank(s)", folder,
            context.runtime.world_size());

  const std::string record_path = folder + "/stages.json";
  const std::string timings_path = folder + "/timings.json";
  json record = json::object();
  if (std::ifstream in(record_path); in) record = json::parse(in, nullptr, false);
  if (record.is_discarded()) record = json::object();

  // Fingerprints come from the config as given: stages fill in keys for later
  // ones (tokenizer.path, model.vocab_size, train.resume), which must not make
  // a later stage look changed on the next run, when the filling stage is skipped.
  const Config given = context.config;
  std::vector<std::string> not_built;
  bool forced = false;
  bool ran_any = false;
  for (const auto& stage : stages) {
    if (!g_run.only.empty() && g_run.only != stage.name) continue;
    // The trainer resets SIGUSR1 to its default when it ends: catch it again.
    std::signal(SIGUSR1, on_pipeline_signal);
    int stop_signal = context.runtime.world().allreduce_value<std::int32_t>(g_pipeline_signal.load(), ReduceOp::kMax);
    if (stop_signal != 0) {
      log::warn("signal {} received; stopping before stage {} (exit status {}); `metareuse run` again resumes here",
                stop_signal, stage.name, static_cast<int>(kExitTimeLimit));
      return kExitTimeLimit;
    }
    if (g_run.from == stage.name) forced = true;
    if (!stage.run) {
      log::info("stage {:<10} not built yet (issue #{})", stage.name, stage.issue);
      not_built.push_back(stage.name);
      continue;
    }
    std::string print = fingerprint(stage, given, folder);
    bool outputs_exist = std::all_of(stage.outputs.begin(), stage.outputs.end(),
                                     [&](const std::string& f) { return fs::exists(folder + "/" + f); });
    bool up_to_date = !forced && g_run.only.empty() && outputs_exist && record.value(stage.name, "") == print;
    // Every rank decides the same (rank 0's view of the folder).
    up_to_date = context.runtime.world().allreduce_value<std::int32_t>(
                     context.runtime.rank() == 0 && up_to_date ? 1 : 0, ReduceOp::kMax) != 0;
    if (up_to_date) {
      log::info("stage {:<10} up to date, skipped", stage.name);
      continue;
    }
    Stopwatch watch;
    log::info("stage {:<10} running", stage.name);
    int status = stage.run(context, folder);
    if (status != kExitOk) {
      log::warn("stage {} stopped with status {}; `metareuse run` again resumes here", stage.name, status);
      return status;
    }
    const double seconds = watch.seconds();
    log::info("stage {:<10} done in {:.2f} s", stage.name, seconds);
    if (context.runtime.rank() == 0) {
      record[stage.name] = print;
      std::ofstream(record_path, std::ios::trunc) << record.dump(2) << "\n";
      record_stage_time(timings_path, stage.name, seconds);
    }
    forced = true;  // a stage that ran makes every later one run
    ran_any = true;
  }
  // The report was written inside the eval stage; written again now, it also
  // shows the times of the eval and export stages.
  if (context.runtime.rank() == 0 && fs::exists(folder + "/report.html") && ran_any) {
    eval::write_report(eval::report_inputs_for_run(folder), folder + "/report.html");
  }
  if (!not_built.empty()) {
    log::warn("pipeline incomplete: {} stage(s) not built yet: {}", not_built.size(), fmt::join(not_built, ", "));
    return kExitNotBuilt;
  }
  return kExitOk;
}

}  // namespace metareuse::cli
