// metareuse train / plan / export: sharded training, its memory plan, and
// checkpoints written out as Hugging Face folders.
#include <fmt/format.h>

#include <iostream>

#include "commands.h"
#include "flags.h"
#include "metareuse/checkpoint/export.h"
#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"
#include "metareuse/run/pipeline.h"
#include "metareuse/train/trainer.h"

namespace metareuse::cli_detail {

namespace {
struct PlanFlags {
  int64_t ranks = 0;
  int64_t sequence_length = 0;  // 0: the config's dataset.sequence_length
  std::string device_memory;
};
PlanFlags g_plan;

struct ExportFlags {
  std::string checkpoint;
  std::string out;
  std::string dtype = "bf16";
  std::string max_shard = "5GB";
};
ExportFlags g_export;
}  // namespace

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
  app.add_option("--ranks", g_plan.ranks, "Ranks (devices) to plan for; default: this job's")
      ->check(whole_number(1, int64_t{1} << 20));
  app.add_option("--seq", g_plan.sequence_length, "Sequence length (at most the model's positions); default: dataset.sequence_length")
      ->check(whole_number(1, int64_t{1} << 24));
  app.add_option("--device-memory", g_plan.device_memory, "Memory per device, e.g. 16GiB");
}

int plan_run(CommandContext& context) {
  const Config& config = context.config;
  LlamaConfig model = plan_model_config(config);
  int64_t ranks = g_plan.ranks > 0 ? g_plan.ranks : context.runtime.world_size();
  std::string memory = g_plan.device_memory.empty() ? config.get_string("train.device_memory") : g_plan.device_memory;
  const int64_t sequence_length =
      g_plan.sequence_length > 0 ? g_plan.sequence_length : config.get_int("dataset.sequence_length");
  MemoryPlan plan = plan_memory(model, ranks, config.get_int("train.micro_batch"), sequence_length,
                                config.get_string("train.precision"), parse_bytes(memory),
                                config.get_string("train.recompute"));
  if (context.runtime.rank() == 0) {
    std::cout << fmt::format("model {} ({} layers, hidden {}), {}, micro batch {}, sequence {}\n",
                             config.get_string("model.path").empty() ? config.get_string("model.preset")
                                                                     : config.get_string("model.path"),
                             model.num_hidden_layers, model.hidden_size, config.get_string("train.precision"),
                             config.get_int("train.micro_batch"), sequence_length);
    std::cout << format_plan(plan);
  }
  return plan.fits ? kExitOk : kExitFailure;
}

void export_options(CLI::App& app, std::vector<std::string>&) {
  app.add_option("--checkpoint", g_export.checkpoint, "Checkpoint file, or a folder with `latest`")->required();
  app.add_option("--out", g_export.out, "Output folder (config.json + safetensors)")->required();
  app.add_option("--dtype", g_export.dtype, "Stored dtype")->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  app.add_option("--max-shard", g_export.max_shard, "Shard the weights above this size (e.g. 5GB)");
}

int export_run(CommandContext& context) {
  if (context.runtime.rank() != 0) return kExitOk;  // one writer; nothing is sharded here
  ExportOptions options;
  options.checkpoint = g_export.checkpoint;
  options.out = g_export.out;
  options.dtype = parse_export_dtype(g_export.dtype);
  options.max_shard_bytes = parse_bytes(g_export.max_shard);
  export_checkpoint(options);
  return kExitOk;
}

}  // namespace metareuse::cli_detail
