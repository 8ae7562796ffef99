// metareuse train / plan / export: sharded training, its memory plan, and
// checkpoints written out as Hugging Face folders. Every flag is a config key
// (flags.h); the library resolves and checks them (run/resolve.h).
#include <iostream>

#include "commands.h"
#include "flags.h"
#include "metareuse/checkpoint/export.h"
#include "metareuse/core/error.h"
#include "metareuse/run/layout.h"
#include "metareuse/run/pipeline.h"
#include "metareuse/run/resolve.h"

namespace metareuse::cli_detail {

void train_options(CLI::App& app, std::vector<std::string>& overrides) {
  app.add_option_function<std::string>(
         "--resume", [&overrides](const std::string& value) { overrides.push_back("train.resume=" + value); },
         "auto (the checkpoint folder's latest, if any) or a checkpoint file/folder")
      ->type_name("auto|PATH");
  app.add_option_function<std::string>(
      "--dataset", [&overrides](const std::string& value) { overrides.push_back("dataset.output=" + value); },
      "Tokenized HDF5 dataset (metareuse prepare; dataset.output)");
}

int train_run(CommandContext& context) { return train_in_run_folder(context.config, context.runtime); }

void plan_options(CLI::App& app, std::vector<std::string>& overrides) {
  // The whole-number checks run on the text as typed, before the config sees it.
  flag_of_key()["plan.ranks"] = "--ranks";
  app.add_option_function<std::string>(
         "--ranks", [&overrides](const std::string& value) { overrides.push_back("plan.ranks=" + value); },
         "Ranks (devices) to plan for (plan.ranks); default: this job's")
      ->check(whole_number(1, int64_t{1} << 20));
  flag_of_key()["plan.sequence_length"] = "--seq";
  app.add_option_function<std::string>(
         "--seq", [&overrides](const std::string& value) { overrides.push_back("plan.sequence_length=" + value); },
         "Sequence length (at most the model's positions; plan.sequence_length); default: dataset.sequence_length")
      ->check(whole_number(1, int64_t{1} << 24));
  add_value_flag(app, "--device-memory", "train.device_memory", "Memory per device, e.g. 16GiB (train.device_memory)",
                 overrides);
}

int plan_run(CommandContext& context) {
  const TrainingPlan plan = plan_training(context.config, context.runtime.world_size());
  if (context.runtime.rank() == 0) std::cout << format_training_plan(plan);
  return plan.memory.fits ? kExitOk : kExitFailure;
}

void export_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--checkpoint", "export.checkpoint",
                 "Checkpoint file, or a folder with `latest` (export.checkpoint; default: the run's checkpoints)",
                 overrides);
  add_value_flag(app, "--out", "export.out", "Output folder, config.json + safetensors (export.out; default: "
                 "<run folder>/export)", overrides);
  add_value_flag(app, "--dtype", "export.dtype", "Stored dtype: fp32 (default), fp16 or bf16 (export.dtype)",
                 overrides);
  add_value_flag(app, "--max-shard", "export.max_shard", "Shard the weights above this size, e.g. 5GB "
                 "(export.max_shard)", overrides);
}

int export_run(CommandContext& context) {
  const ExportOptions options = export_stage_options(context.config, RunLayout::for_config(context.config));
  if (context.runtime.rank() != 0) return kExitOk;  // one writer; nothing is sharded here
  export_checkpoint(options);
  return kExitOk;
}

}  // namespace metareuse::cli_detail
