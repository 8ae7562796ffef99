// metareuse train / plan / export: sharded training, its memory plan, and
// checkpoints written out as Hugging Face folders.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "commands.h"
#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/model/source.h"
#include "metareuse/train/trainer.h"

namespace metareuse::cli {
namespace fs = std::filesystem;

namespace {
struct PlanFlags {
  int64_t ranks = 0;
  int64_t sequence_length = 2048;
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

int train_run(CommandContext& context) {
  const std::string folder = run_folder(context.config);
  if (context.runtime.rank() == 0) context.config.write(folder + "/config.resolved.json");
  return run_training(TrainOptions::from_config(context.config, folder), context.runtime, folder);
}

void plan_options(CLI::App& app, std::vector<std::string>& overrides) {
  app.add_option("--ranks", g_plan.ranks, "Ranks (devices) to plan for; default: this job's")->check(CLI::PositiveNumber);
  app.add_option("--seq", g_plan.sequence_length, "Sequence length")->check(CLI::PositiveNumber);
  app.add_option("--device-memory", g_plan.device_memory, "Memory per device, e.g. 16GiB");
}

int plan_run(CommandContext& context) {
  const Config& config = context.config;
  LlamaConfig model = model_config_from(config);
  int64_t ranks = g_plan.ranks > 0 ? g_plan.ranks : context.runtime.world_size();
  std::string memory = g_plan.device_memory.empty() ? config.get_string("train.device_memory") : g_plan.device_memory;
  MemoryPlan plan = plan_memory(model, ranks, config.get_int("train.micro_batch"), g_plan.sequence_length,
                                config.get_string("train.precision"), parse_bytes(memory));
  if (context.runtime.rank() == 0) {
    std::cout << fmt::format("model {} ({} layers, hidden {}), {}, micro batch {}, sequence {}\n",
                             config.get_string("model.path").empty() ? config.get_string("model.preset")
                                                                     : config.get_string("model.path"),
                             model.num_hidden_layers, model.hidden_size, config.get_string("train.precision"),
                             config.get_int("train.micro_batch"), g_plan.sequence_length);
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
  return export_execute(g_export.checkpoint, g_export.out, g_export.dtype, g_export.max_shard);
}

int export_execute(const std::string& checkpoint, const std::string& out, const std::string& dtype_name,
                   const std::string& max_shard) {
  std::string path = resolve_checkpoint(checkpoint, "");
  nlohmann::json meta = read_checkpoint_meta(path);
  LlamaConfig model_config = LlamaConfig::from_hf_json(meta.at("model"), path + ": meta.model");
  LlamaModel model(model_config);
  auto parameters = read_checkpoint_params(path);
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, value] : model.named_parameters()) {
      auto found = parameters.find(name);
      if (found == parameters.end()) throw InputError(fmt::format("{}: parameter '{}' is missing", path, name));
      const_cast<torch::Tensor&>(value).copy_(found->second);
    }
  }
  torch::ScalarType dtype = dtype_name == "fp32" ? torch::kFloat32
                            : dtype_name == "fp16" ? torch::kFloat16
                                                   : torch::kBFloat16;
  save_hf_model(model, out, parse_bytes(max_shard), dtype);
  // The tokenizer the run used travels with the weights.
  if (meta.contains("config")) {
    std::string tokenizer = meta["config"].value("tokenizer", nlohmann::json::object()).value("path", "");
    if (!tokenizer.empty() && fs::exists(tokenizer)) {
      fs::copy_file(tokenizer, fs::path(out) / fs::path(tokenizer).filename(),
                    fs::copy_options::overwrite_existing);
    }
  }
  log::info("exported {} (step {}) to {} as {}", path, meta.value("step", 0), out, dtype_name);
  return kExitOk;
}

}  // namespace metareuse::cli
