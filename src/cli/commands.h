// The subcommand table of the metareuse binary. Each command declares its
// options and its run function.
#pragma once

#include <CLI/CLI.hpp>  // CLI::App

#include <functional>
#include <string>
#include <vector>

#include "metareuse/core/config.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/patterns/reflect.h"  // StrategistFactory

namespace metareuse::cli_detail {

// Everything a command sees when it runs. The config already holds the
// command's own flags (each one a "section.key=value" override, so a flag and
// its key never disagree) and is read-only from here on: the library resolves
// it into the command's options (run/resolve.h).
struct CommandContext {
  const Config& config;
  Runtime& runtime;
};

struct CommandSpec {
  std::string name;
  std::string summary;
  // Adds the command's own flags. Flags that set config keys append
  // "key=value" strings to `overrides`.
  std::function<void(CLI::App& app, std::vector<std::string>& overrides)> add_options;
  // Runs the command on every rank; returns an exit status.
  std::function<int(CommandContext& context)> run;
  // Runs in metareuse-torch: the torch-free front binary (metareuse) lists the
  // command and execs metareuse-torch for it (see main.cpp).
  bool needs_torch = false;
  // A torch-free command that needs torch for some configs (patterns in reflect
  // mode): the front binary execs metareuse-torch when this says so.
  std::function<bool(const Config& config)> needs_torch_for = nullptr;
};

const std::vector<CommandSpec>& command_table();

// Commands, one file each.
void info_options(CLI::App& app, std::vector<std::string>& overrides);
int info_run(CommandContext& context);
void run_options(CLI::App& app, std::vector<std::string>& overrides);
int run_run(CommandContext& context);
// forward and generate: cmd_model.cpp
void forward_options(CLI::App& app, std::vector<std::string>& overrides);
int forward_run(CommandContext& context);
void generate_options(CLI::App& app, std::vector<std::string>& overrides);
int generate_run(CommandContext& context);
void tokenize_options(CLI::App& app, std::vector<std::string>& overrides);
int tokenize_run(CommandContext& context);
void prepare_options(CLI::App& app, std::vector<std::string>& overrides);
int prepare_run(CommandContext& context);

// world: cmd_world.cpp
void world_options(CLI::App& app, std::vector<std::string>& overrides);
int world_run(CommandContext& context);

// patterns and augment
void patterns_options(CLI::App& app, std::vector<std::string>& overrides);
int patterns_run(CommandContext& context);  // no model: reflect mode is a UsageError
int patterns_run_with(CommandContext& context, const StrategistFactory& make_strategist);
bool patterns_needs_torch(const Config& config);  // reflect mode
void augment_options(CLI::App& app, std::vector<std::string>& overrides);
int augment_run(CommandContext& context);

// train, plan and export: cmd_train.cpp
void train_options(CLI::App& app, std::vector<std::string>& overrides);
int train_run(CommandContext& context);
void plan_options(CLI::App& app, std::vector<std::string>& overrides);
int plan_run(CommandContext& context);
void export_options(CLI::App& app, std::vector<std::string>& overrides);
int export_run(CommandContext& context);

// eval and report: cmd_eval.cpp
void eval_options(CLI::App& app, std::vector<std::string>& overrides);
int eval_run(CommandContext& context);
void distill_options(CLI::App& app, std::vector<std::string>& overrides);
int distill_run(CommandContext& context);
void report_options(CLI::App& app, std::vector<std::string>& overrides);
int report_run(CommandContext& context);

}  // namespace metareuse::cli_detail
