// The run folder: the one place that names its files. Every stage, the
// pipeline and the CLI ask a RunLayout for a path instead of spelling a name.
//
//   config.resolved.json   the config the run used (`metareuse run`, `train`)
//   handbook.json          patterns
//   augmented.jsonl        augment
//   tokenizer.model        a sentencepiece tokenizer trained here (no tokenizer.path)
//   dataset.h5             prepare
//   metrics.jsonl          train (one train::MetricsLine per optimizer step)
//   checkpoints/           train (ckpt-*.h5 and the checkpoint library's `latest`)
//   eval/eval.json         eval (eval::EvalFile)
//   eval/answers.jsonl     eval (one eval::AnswerLine per question and model)
//   report.html            report
//   export/                export (Hugging Face folder)
//   stages.json            `metareuse run`: each finished stage's fingerprint
//   timings.json           `metareuse run`: run::Timings
//   run.lock               `metareuse run`, `train`: the job writing here (run::RunFolderLock)
//   baseline/              experiment.baseline: the baseline's own run folder
//                          (its examples in baseline/examples.jsonl)
#pragma once

#include <string>

#include "metareuse/checkpoint/names.h"  // kLatestPointer (torch-free)

namespace metareuse {
class Config;
}

namespace metareuse::run {

// File names inside a run folder, relative to it. The stage table lists its
// inputs and outputs with these; everything else uses RunLayout's paths.
namespace file {
inline constexpr const char* kResolvedConfig = "config.resolved.json";
inline constexpr const char* kHandbook = "handbook.json";
inline constexpr const char* kAugmented = "augmented.jsonl";
inline constexpr const char* kTokenizer = "tokenizer.model";
inline constexpr const char* kDataset = "dataset.h5";
inline constexpr const char* kMetrics = "metrics.jsonl";
inline constexpr const char* kCheckpoints = "checkpoints";
// The checkpoint library's pointer to the newest complete checkpoint, in the checkpoint folder.
inline constexpr const char* kLatestCheckpoint = "checkpoints/latest";
inline constexpr const char* kEval = "eval";
inline constexpr const char* kReport = "report.html";
inline constexpr const char* kExport = "export";
// What marks a finished export: the Hugging Face config written last but one (the weights come first).
inline constexpr const char* kExportConfig = "export/config.json";
inline constexpr const char* kStages = "stages.json";
inline constexpr const char* kTimings = "timings.json";
inline constexpr const char* kLock = "run.lock";
inline constexpr const char* kBaseline = "baseline";
inline constexpr const char* kBaselineExamples = "examples.jsonl";  // inside baseline/
// The baseline's dataset and checkpoint pointer, as stage inputs and outputs.
inline constexpr const char* kBaselineDataset = "baseline/dataset.h5";
inline constexpr const char* kBaselineLatestCheckpoint = "baseline/checkpoints/latest";
// Inside an eval output folder (eval/ of a run, or `metareuse eval --out`).
inline constexpr const char* kEvalFile = "eval.json";
inline constexpr const char* kAnswers = "answers.jsonl";
static_assert(names_latest_pointer(kLatestCheckpoint, kCheckpoints), "the checkpoint library names its pointer");
static_assert(names_latest_pointer(kBaselineLatestCheckpoint, "baseline/checkpoints"),
              "the checkpoint library names its pointer");
}  // namespace file

class RunLayout {
 public:
  explicit RunLayout(std::string folder) : folder_(std::move(folder)) {}
  // run.out_dir, or runs/<run.name>.
  static RunLayout for_config(const Config& config);

  const std::string& folder() const { return folder_; }
  // <folder>/<relative>: how every path below is made (stages.json's
  // fingerprints hold these strings, so they must not change spelling).
  std::string path(const char* relative) const { return folder_ + "/" + relative; }

  std::string resolved_config() const { return path(file::kResolvedConfig); }
  std::string handbook() const { return path(file::kHandbook); }
  std::string augmented() const { return path(file::kAugmented); }
  std::string tokenizer() const { return path(file::kTokenizer); }
  std::string dataset() const { return path(file::kDataset); }
  std::string metrics() const { return path(file::kMetrics); }
  std::string lock() const { return path(file::kLock); }
  std::string checkpoints() const { return path(file::kCheckpoints); }
  // The checkpoint folder a config trains into: checkpoint.dir, or checkpoints().
  std::string checkpoint_folder(const Config& config) const;
  std::string eval_folder() const { return path(file::kEval); }
  std::string eval_file() const { return eval_file_in(eval_folder()); }
  std::string answers() const { return answers_in(eval_folder()); }
  std::string report() const { return path(file::kReport); }
  std::string export_folder() const { return path(file::kExport); }
  std::string stages() const { return path(file::kStages); }
  std::string timings() const { return path(file::kTimings); }
  // The baseline's run folder (experiment.baseline) and its unaugmented examples.
  RunLayout baseline() const { return RunLayout(path(file::kBaseline)); }
  std::string baseline_examples() const { return baseline().path(file::kBaselineExamples); }

  // The files of an eval output folder, wherever it is.
  static std::string eval_file_in(const std::string& eval_folder);
  static std::string answers_in(const std::string& eval_folder);

 private:
  std::string folder_;
};

}  // namespace metareuse::run
