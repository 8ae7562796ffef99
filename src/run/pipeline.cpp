// The stage table and the loop that runs it (pipeline.h).
#include "metareuse/run/pipeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join
#include <nlohmann/json.hpp>
#include <xxhash.h>  // XXH3_64bits, the fingerprints

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
#include "metareuse/core/stage_timings.h"  // Timings: timings.json
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/eval/distill.h"
#include "metareuse/eval/report.h"
#include "metareuse/eval/run_eval.h"
#include "metareuse/patterns/strategist.h"  // reflect mode's model
#include "metareuse/run/layout.h"
#include "metareuse/run/lock.h"
#include "metareuse/run/resolve.h"
#include "metareuse/run/run_report.h"
#include "metareuse/tokenizer/sentencepiece.h"  // the run's own tokenizer
#include "metareuse/tokenizer/tokenizer.h"
#include "metareuse/core/stop_signals.h"  // a signal a stage caught in its last round
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

using StageFunction = std::function<int(const ResolvedRun& run, Runtime& runtime)>;

struct Stage {
  const char* name;
  std::vector<std::string> inputs;    // files (relative to the run folder) it reads
  std::vector<std::string> outputs;   // files it writes
  StageFunction run;                  // returns an exit status
  bool reads_corpus = false;          // corpus.files are inputs too
};

int patterns_step(const ResolvedRun& run, Runtime& runtime) {
  return patterns_stage(run.patterns, runtime, make_model_strategist);
}

int augment_step(const ResolvedRun& run, Runtime& runtime) { return augment_stage(run.augment, runtime); }

// Trains the run's own tokenizer when the run uses it (no tokenizer.path, no
// model.path tokenizer). Its vocabulary was resolved as train_vocab_size
// before the tokenizer existed: a tokenizer of another size stops the run here.
void ensure_tokenizer(const ResolvedRun& run, Runtime& runtime) {
  if (!run.tokenizer_training) return;
  const TokenizerTraining& training = *run.tokenizer_training;
  if (runtime.rank() == 0) {
    auto tokenizer =
        train_sentencepiece_on_corpus(training.corpus, training.out, training.vocab_size, training.model_type);
    if (tokenizer->vocab_size() != training.vocab_size) {
      throw InputError(fmt::format("{}: sentencepiece made {} pieces, not tokenizer.train_vocab_size={}; lower "
                                   "tokenizer.train_vocab_size or give tokenizer.path",
                                   training.out, tokenizer->vocab_size(), training.vocab_size));
    }
  }
  runtime.world().barrier();
}

int prepare_step(const ResolvedRun& run, Runtime& runtime) {
  ensure_tokenizer(run, runtime);
  return prepare_stage(run.prepare, runtime);
}

int train_step(const ResolvedRun& run, Runtime& runtime) {
  return run_training(run.train.options, runtime);
}

// Verifies that the final checkpoint is complete and loadable.
int checkpoint_step(const ResolvedRun& run, Runtime&) {
  std::string latest = resolve_checkpoint(run.checkpoints, "");
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

// The baseline's examples (the corpus without patterns), tokenized with the run's tokenizer.
int baseline_data_step(const ResolvedRun& run, Runtime& runtime) {
  const int status = augment_stage(run.baseline_augment, runtime);
  if (status != kExitOk) return status;
  return prepare_stage(run.baseline_prepare, runtime);
}

// The baseline model: the train stage's settings on the baseline's dataset.
int baseline_train_step(const ResolvedRun& run, Runtime& runtime) {
  return run_training(run.baseline_train.options, runtime);
}

// The teacher's right answers, prompted with behaviors, as the student's examples.
int distill_step(const ResolvedRun& run, Runtime& runtime) { return run_distill(run.distill, runtime.world()); }

// The student's dataset: the distilled examples, tokenized with the run's tokenizer.
int student_data_step(const ResolvedRun& run, Runtime& runtime) { return prepare_stage(run.student_prepare, runtime); }

// The BC-SFT student: the train stage's settings on the distilled dataset, from the same start.
int student_train_step(const ResolvedRun& run, Runtime& runtime) {
  return run_training(run.student_train.options, runtime);
}

// Evaluates the trained model (and eval.baseline, when set) on eval.questions,
// then writes <run>/report.html. With experiment.baseline: the three entries.
int eval_step(const ResolvedRun& run, Runtime& runtime) {
  if (run.eval.questions.empty()) {
    log_warn("eval: no eval.questions in the config; nothing to evaluate (the report has no eval table)");
  } else {
    const int status = run_evaluation(run.eval, runtime.world());
    if (status != kExitOk) return status;  // stopped between rounds: the next run goes on from its answers
  }
  if (runtime.rank() != 0) return kExitOk;
  write_report(report_inputs_for_run(run.layout.folder()), run.layout.report());
  log_info("wrote {}", run.layout.report());
  return kExitOk;
}

int export_step(const ResolvedRun& run, Runtime& runtime) {
  if (runtime.rank() != 0) return kExitOk;
  export_checkpoint(run.export_options);
  return kExitOk;
}

std::vector<Stage> pipeline_stages(bool baseline, bool bc_sft) {
  std::vector<Stage> stages = {
      {"patterns", {}, {RunFile::kHandbook}, patterns_step, true},
      {"augment", {RunFile::kHandbook}, {RunFile::kAugmented}, augment_step, true},
      {"prepare", {RunFile::kAugmented}, {RunFile::kDataset}, prepare_step},
      {"train", {RunFile::kDataset}, {RunFile::kLatestCheckpoint}, train_step},
      {"checkpoint", {RunFile::kLatestCheckpoint}, {}, checkpoint_step},
      {"eval", {RunFile::kLatestCheckpoint}, {RunFile::kReport}, eval_step},
      {"export", {RunFile::kLatestCheckpoint}, {RunFile::kExportConfig}, export_step},
  };
  if (baseline) {
    // After the run's own model, before eval, which compares the two.
    auto eval = std::find_if(stages.begin(), stages.end(), [](const Stage& s) { return std::string(s.name) == "eval"; });
    eval->inputs.push_back(RunFile::kBaselineLatestCheckpoint);
    stages.insert(eval, {{"baseline-data", {RunFile::kHandbook, RunFile::kDataset}, {RunFile::kBaselineDataset},
                          baseline_data_step, true},
                         {"baseline-train", {RunFile::kBaselineDataset}, {RunFile::kBaselineLatestCheckpoint},
                          baseline_train_step}});
  }
  if (bc_sft) {
    // The teacher is the run's model by default: after its training, before eval, which compares the student.
    auto eval = std::find_if(stages.begin(), stages.end(), [](const Stage& s) { return std::string(s.name) == "eval"; });
    eval->inputs.push_back(RunFile::kStudentLatestCheckpoint);
    stages.insert(eval, {{"distill", {RunFile::kLatestCheckpoint, RunFile::kHandbook, RunFile::kAugmented},
                          {RunFile::kDistilled}, distill_step, true},
                         {"student-data", {RunFile::kDistilled}, {RunFile::kStudentDataset}, student_data_step},
                         {"student-train", {RunFile::kStudentDataset}, {RunFile::kStudentLatestCheckpoint},
                          student_train_step}});
  }
  return stages;
}

// The xxHash of the config keys the stage's options were built from (with
// their resolved values), the corpus files and the stage's inputs (size and
// mtime). XXH3 is the same on every toolchain, so a rebuilt binary still
// finds the run folder's stages up to date.
std::string fingerprint(const Stage& stage, const ResolvedRun& run) {
  json parts = json::object();
  if (auto keys = run.stage_keys.find(stage.name); keys != run.stage_keys.end()) parts["config"] = keys->second;
  std::vector<std::string> files;
  for (const auto& input : stage.inputs) files.push_back(run.layout.path(input.c_str()));
  if (stage.reads_corpus) {
    for (const auto& corpus_file : run.patterns.corpus_files) files.push_back(corpus_file);
  }
  for (const auto& path : files) {
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    auto time = fs::last_write_time(path, ec).time_since_epoch().count();
    parts["files"][path] = ec ? json(nullptr) : json::array({size, time});
  }
  const std::string text = parts.dump();
  return fmt::format("{:016x}", static_cast<unsigned long long>(XXH3_64bits(text.data(), text.size())));
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

int run_pipeline(const Config& given, Runtime& runtime, const PipelineOptions& options) {
  g_pipeline_signal.store(0);
  StopSignals::forget();
  std::signal(SIGUSR1, on_pipeline_signal);
  const std::vector<Stage> stages =
      pipeline_stages(given.get_bool("experiment.baseline"), given.get_bool("experiment.bc_sft"));
  check_stage_names(stages, options);
  const RunLayout layout = RunLayout::for_config(given);
  RunFolderLock lock;  // one job per run folder (rank 0 holds it for the job)
  if (runtime.rank() == 0) lock = RunFolderLock(layout.lock());
  // No rank reads the folder before rank 0 holds the lock: when it is held
  // elsewhere, rank 0's error ends the job while the others wait here.
  runtime.world().barrier();
  // The resolved config (config.resolved.json) is written by the train stage
  // once its training starts: a run whose stages are all skipped, or whose
  // training is refused, leaves the file of the training that ran.
  const ResolvedRun run = resolve_run(given);
  log_info("run folder {}, {} rank(s)", layout.folder(), runtime.world_size());
  json record = read_stage_record(layout.stages());

  bool forced = false;
  bool ran_any = false;
  for (const auto& stage : stages) {
    if (!options.only.empty() && options.only != stage.name) continue;
    // The trainer resets SIGUSR1 to its default when it ends: catch it again.
    std::signal(SIGUSR1, on_pipeline_signal);
    const int seen = std::max(g_pipeline_signal.load(), StopSignals::last_received());
    int stop_signal = runtime.world().allreduce_value<std::int32_t>(seen, ReduceOp::kMax);
    if (stop_signal != 0) {
      log_warn("signal {} received; stopping before stage {} (exit status {}); `metareuse run` again resumes here",
                stop_signal, stage.name, static_cast<int>(kExitTimeLimit));
      return kExitTimeLimit;
    }
    if (options.from == stage.name) forced = true;
    std::string print = fingerprint(stage, run);
    bool may_skip = !forced && options.only.empty();
    if (stage_up_to_date(stage, print, record, layout, runtime) && may_skip) {
      log_info("stage {:<10} up to date, skipped", stage.name);
      continue;
    }
    Stopwatch watch;
    log_info("stage {:<10} running", stage.name);
    int status = stage.run(run, runtime);
    if (status == kExitBadRecords) {
      throw InputError(fmt::format("{}: corpus.strict is set and the corpus has bad lines", stage.name));
    }
    if (status != kExitOk) {
      // Its outputs may be an earlier run's (a forced stage stopped part way): not up to date now.
      if (runtime.rank() == 0 && record.erase(stage.name) > 0) {
        write_file_atomic(layout.stages(), record.dump(2) + "\n");
      }
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
  const ResolvedTraining training = resolve_training(given);
  RunFolderLock lock;  // one job per run folder (rank 0 holds it for the job)
  // The trainer writes the resolved config once training has started.
  if (runtime.rank() == 0) lock = RunFolderLock(RunLayout(training.folder).lock());
  // No rank touches the folder before rank 0 holds the lock: when it is held
  // elsewhere, rank 0's error ends the job while the others wait here.
  runtime.world().barrier();
  return run_training(training.options, runtime);
}

}  // namespace metareuse
