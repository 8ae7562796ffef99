// The subcommand table of the metareuse binary. Each command declares its
// options and its run function; commands that are planned but not built yet
// say so and exit with kExitNotBuilt.
#pragma once

#include <CLI/CLI.hpp>  // CLI::App

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metareuse/core/config.h"
#include "metareuse/corpus/corpus.h"
#include "metareuse/distributed/runtime.h"

namespace metareuse {
class Tokenizer;
}

namespace metareuse::cli {

// Everything a command sees when it runs.
struct CommandContext {
  Config& config;
  Runtime& runtime;
  // Command-specific flags land here as "section.key=value" overrides, so a
  // flag and its config key can never disagree.
};

struct CommandSpec {
  std::string name;
  std::string summary;
  int issue = 0;  // the issue that builds it, while it is not built
  // Adds the command's own flags. Flags that set config keys append
  // "key=value" strings to `overrides`.
  std::function<void(CLI::App& app, std::vector<std::string>& overrides)> add_options;
  // Runs the command on every rank; returns an exit status.
  std::function<int(CommandContext& context)> run;
  // Runs in metareuse-torch: the torch-free front binary (metareuse) lists the
  // command and execs metareuse-torch for it (see main.cpp).
  bool needs_torch = false;

  bool built() const { return static_cast<bool>(run) || needs_torch; }
};

const std::vector<CommandSpec>& command_table();

// Commands, one file each.
void info_options(CLI::App& app, std::vector<std::string>& overrides);
int info_run(CommandContext& context);
void run_options(CLI::App& app, std::vector<std::string>& overrides);
int run_run(CommandContext& context);
// model (issue #5): cmd_model.cpp
void forward_options(CLI::App& app, std::vector<std::string>& overrides);
int forward_run(CommandContext& context);
void generate_options(CLI::App& app, std::vector<std::string>& overrides);
int generate_run(CommandContext& context);
void tokenize_options(CLI::App& app, std::vector<std::string>& overrides);
int tokenize_run(CommandContext& context);
void prepare_options(CLI::App& app, std::vector<std::string>& overrides);
int prepare_run(CommandContext& context);

// world (issue #10): cmd_world.cpp
void world_options(CLI::App& app, std::vector<std::string>& overrides);
int world_run(CommandContext& context);

// patterns and augment (issue #3); *_execute write to the given paths, for `run`.
void patterns_options(CLI::App& app, std::vector<std::string>& overrides);
int patterns_run(CommandContext& context);
int patterns_execute(CommandContext& context, const std::string& out_path);
void augment_options(CLI::App& app, std::vector<std::string>& overrides);
int augment_run(CommandContext& context);
int augment_execute(CommandContext& context, const std::string& handbook_path, const std::string& out_path);

// corpus.fields and corpus.max_depth as read options.
corpus::ReadOptions corpus_read_options(const Config& config);

// train (#6, #7): cmd_train.cpp
void train_options(CLI::App& app, std::vector<std::string>& overrides);
int train_run(CommandContext& context);
void plan_options(CLI::App& app, std::vector<std::string>& overrides);
int plan_run(CommandContext& context);
void export_options(CLI::App& app, std::vector<std::string>& overrides);
int export_run(CommandContext& context);

// Pipeline entry points for `run` (cmd_run.cpp), shared with the subcommands.
// Trains a sentencepiece tokenizer on a corpus (rank 0 only) into `model` (.model).
std::unique_ptr<Tokenizer> train_tokenizer(CommandContext& context, const std::string& corpus, const std::string& model);
// Tokenizes `input` (augmented JSON Lines) into the HDF5 dataset `output`.
int prepare_execute(CommandContext& context, const std::string& input, const std::string& output);
// Writes checkpoint `checkpoint` (file, or folder with latest) as a Hugging Face folder.
int export_execute(const std::string& checkpoint, const std::string& out, const std::string& dtype,
                   const std::string& max_shard);

// eval and report (#8): cmd_eval.cpp. eval_execute evaluates `model_path`
// (and `baseline_path` when not empty) on `questions_path`, writing
// eval.json and answers.jsonl into `out_dir`; report_execute renders
// <run>/report.html from a run folder. Both are for `run` as well.
void eval_options(CLI::App& app, std::vector<std::string>& overrides);
int eval_run(CommandContext& context);
int eval_execute(CommandContext& context, const std::string& model_path, const std::string& baseline_path,
                 const std::string& questions_path, const std::string& out_dir);
// One model to evaluate: its name in eval.json, its path, and whether its
// prompts carry handbook patterns (#10: baseline, reuse, control).
struct EvalEntry {
  std::string role;
  std::string path;
  bool patterns = true;
};
int eval_entries_execute(CommandContext& context, const std::vector<EvalEntry>& entries,
                         const std::string& questions_path, const std::string& out_dir);
void report_options(CLI::App& app, std::vector<std::string>& overrides);
int report_run(CommandContext& context);
int report_execute(CommandContext& context, const std::string& run_folder, const std::string& out_path);

// The run folder of this config: run.out_dir, or runs/<run.name>.
std::string run_folder(const Config& config);

}  // namespace metareuse::cli
