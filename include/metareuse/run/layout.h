// The run folder: the one place that names its files. Every stage, the
// pipeline and the CLI ask a RunLayout for a path instead of spelling a name.
//
//   config.resolved.json   the config the training used (written once it has started)
//   handbook.json          patterns
//   augmented.jsonl        augment
//   tokenizer.model        a sentencepiece tokenizer trained here (no tokenizer.path)
//   dataset.h5             prepare
//   metrics.jsonl          train (one train::MetricsLine per optimizer step)
//   checkpoints/           train (ckpt-*.h5 and the checkpoint library's `latest`)
//   eval/eval.json         eval (EvalFile)
//   eval/answers.jsonl     eval (one AnswerRecord per question and model)
//   report.html            report
//   export/                export (Hugging Face folder)
//   stages.json            `metareuse run`: each finished stage's fingerprint
//   timings.json           `metareuse run`: Timings
//   run.lock               `metareuse run`, `train`: the job writing here (RunFolderLock)
//   baseline/              experiment.baseline: the baseline's own run folder
//                          (its examples in baseline/examples.jsonl)
//   distilled.jsonl        experiment.bc_sft: distill's training examples
//   distill/               distill's answers.jsonl (every teacher answer) and distill.json
//   student/               experiment.bc_sft: the BC-SFT student's own run folder
#pragma once

#include <string>

#include "metareuse/checkpoint/names.h"  // kLatestPointer (torch-free)

namespace metareuse {
class Config;

// File names inside a run folder, relative to it. The stage table lists its
// inputs and outputs with these; everything else uses RunLayout's paths.
struct RunFile {
  static constexpr const char* kResolvedConfig = "config.resolved.json";
  static constexpr const char* kHandbook = "handbook.json";
  static constexpr const char* kAugmented = "augmented.jsonl";
  static constexpr const char* kTokenizer = "tokenizer.model";
  static constexpr const char* kDataset = "dataset.h5";
  static constexpr const char* kMetrics = "metrics.jsonl";
  static constexpr const char* kCheckpoints = "checkpoints";
  // The checkpoint library's pointer to the newest complete checkpoint, in the checkpoint folder.
  static constexpr const char* kLatestCheckpoint = "checkpoints/latest";
  static constexpr const char* kEval = "eval";
  static constexpr const char* kReport = "report.html";
  static constexpr const char* kExport = "export";
  // What marks a finished export: the Hugging Face config written last but one (the weights come first).
  static constexpr const char* kExportConfig = "export/config.json";
  static constexpr const char* kStages = "stages.json";
  static constexpr const char* kTimings = "timings.json";
  static constexpr const char* kLock = "run.lock";
  static constexpr const char* kBaseline = "baseline";
  static constexpr const char* kBaselineExamples = "examples.jsonl";  // inside baseline/
  // The baseline's dataset and checkpoint pointer, as stage inputs and outputs.
  static constexpr const char* kBaselineDataset = "baseline/dataset.h5";
  static constexpr const char* kBaselineLatestCheckpoint = "baseline/checkpoints/latest";
  static constexpr const char* kDistilled = "distilled.jsonl";
  static constexpr const char* kDistillAnswers = "distill/answers.jsonl";
  static constexpr const char* kDistillSummary = "distill/distill.json";
  static constexpr const char* kStudent = "student";
  static constexpr const char* kStudentDataset = "student/dataset.h5";
  static constexpr const char* kStudentLatestCheckpoint = "student/checkpoints/latest";
  // Inside an eval output folder (eval/ of a run, or `metareuse eval --out`).
  static constexpr const char* kEvalFile = "eval.json";
  static constexpr const char* kAnswers = "answers.jsonl";
  // The answers so far of an eval that has not finished (eval's answer log);
  // removed once answers.jsonl and eval.json are written.
  static constexpr const char* kPartialAnswers = "answers.partial.jsonl";
};
static_assert(names_latest_pointer(RunFile::kLatestCheckpoint, RunFile::kCheckpoints), "the checkpoint library names its pointer");
static_assert(names_latest_pointer(RunFile::kBaselineLatestCheckpoint, "baseline/checkpoints"),
              "the checkpoint library names its pointer");
static_assert(names_latest_pointer(RunFile::kStudentLatestCheckpoint, "student/checkpoints"),
              "the checkpoint library names its pointer");

class RunLayout {
 public:
  explicit RunLayout(std::string folder) : folder_(std::move(folder)) {}
  // run.out_dir, or runs/<run.name>.
  static RunLayout for_config(const Config& config);

  const std::string& folder() const { return folder_; }
  // <folder>/<relative>: how every path below is made (stages.json's
  // fingerprints hold these strings, so they must not change spelling).
  std::string path(const char* relative) const { return folder_ + "/" + relative; }

  std::string resolved_config() const { return path(RunFile::kResolvedConfig); }
  std::string handbook() const { return path(RunFile::kHandbook); }
  std::string augmented() const { return path(RunFile::kAugmented); }
  std::string tokenizer() const { return path(RunFile::kTokenizer); }
  std::string dataset() const { return path(RunFile::kDataset); }
  std::string metrics() const { return path(RunFile::kMetrics); }
  std::string lock() const { return path(RunFile::kLock); }
  std::string checkpoints() const { return path(RunFile::kCheckpoints); }
  // The checkpoint folder a config trains into: checkpoint.dir, or checkpoints().
  std::string checkpoint_folder(const Config& config) const;
  std::string eval_folder() const { return path(RunFile::kEval); }
  std::string eval_file() const { return eval_file_in(eval_folder()); }
  std::string answers() const { return answers_in(eval_folder()); }
  std::string report() const { return path(RunFile::kReport); }
  std::string export_folder() const { return path(RunFile::kExport); }
  std::string stages() const { return path(RunFile::kStages); }
  std::string timings() const { return path(RunFile::kTimings); }
  // The baseline's run folder (experiment.baseline) and its unaugmented examples.
  RunLayout baseline() const { return RunLayout(path(RunFile::kBaseline)); }
  std::string baseline_examples() const { return baseline().path(RunFile::kBaselineExamples); }
  // experiment.bc_sft: distill's files and the student's run folder.
  std::string distilled() const { return path(RunFile::kDistilled); }
  std::string distill_answers() const { return path(RunFile::kDistillAnswers); }
  std::string distill_summary() const { return path(RunFile::kDistillSummary); }
  RunLayout student() const { return RunLayout(path(RunFile::kStudent)); }

  // The files of an eval output folder, wherever it is.
  static std::string eval_file_in(const std::string& eval_folder);
  static std::string answers_in(const std::string& eval_folder);
  static std::string partial_answers_in(const std::string& eval_folder);

 private:
  std::string folder_;
};

}  // namespace metareuse
