// Model sources (where weights come from) and saving as a Hugging Face folder.
#include "metareuse/model/source.h"

#include <fmt/format.h>   // messages
#include <torch/torch.h>  // NoGradGuard, copy_

#include <filesystem>
#include <fstream>
#include <set>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/model/safetensors.h"

namespace metareuse {
namespace {

namespace fs = std::filesystem;

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

struct HfSafetensorsSource::Checkpoint {
  explicit Checkpoint(const std::string& folder) : files(folder) {}
  SafetensorsCheckpoint files;
};

HfSafetensorsSource::HfSafetensorsSource(const std::string& folder) : folder_(folder) {
  const fs::path config_path = fs::path(folder) / "config.json";
  if (!fs::exists(config_path)) {
    throw InputError(fmt::format("model folder '{}' has no config.json (looked for {})", folder,
                                 absolute_text(config_path.string())));
  }
  config_ = LlamaConfig::from_hf_file(config_path.string());
  checkpoint_ = std::make_unique<Checkpoint>(folder);
}

HfSafetensorsSource::~HfSafetensorsSource() = default;

std::string HfSafetensorsSource::description() const {
  return fmt::format("Hugging Face folder {} ({})", folder_, checkpoint_->files.description());
}

void HfSafetensorsSource::check_tensors() const {
  const SafetensorsCheckpoint& files = checkpoint_->files;
  const std::string where = files.description();
  std::set<std::string> expected;
  for (const auto& parameter : checkpoint_parameters(config_)) {
    expected.insert(parameter.name);
    if (!files.contains(parameter.name)) {
      throw InputError(fmt::format("tensor '{}' (shape {}) is missing from the checkpoint '{}'", parameter.name,
                                   shape_text(parameter.shape), where));
    }
    const SafetensorsEntry& entry = files.entry(parameter.name);
    if (entry.shape != parameter.shape) {
      throw InputError(fmt::format("tensor '{}' in file '{}' has shape {}, but the config needs {}", parameter.name,
                                   files.file_of(parameter.name), shape_text(entry.shape), shape_text(parameter.shape)));
    }
  }
  for (const auto& name : files.names()) {
    if (expected.count(name)) continue;
    // Tolerated as transformers tolerates them: a stored copy of a tied head,
    // and the rotary buffer older exports saved.
    if (name == "lm_head.weight" && config_.tie_word_embeddings) continue;
    if (ends_with(name, "rotary_emb.inv_freq")) continue;
    throw InputError(fmt::format("unexpected tensor '{}' in file '{}': it is not a parameter of the model config.json "
                                 "describes",
                                 name, files.file_of(name)));
  }
}

torch::Tensor HfSafetensorsSource::read(const std::string& name, torch::ScalarType dtype) const {
  return checkpoint_->files.tensor(name, dtype);
}

void ModelSource::load_into(LlamaModel& model) const {
  check_tensors();
  torch::NoGradGuard no_grad;
  for (const auto& [name, view] : model.named_parameters()) {
    torch::Tensor value = read(name, model.dtype());
    // copy_ would broadcast a smaller tensor silently.
    if (value.sizes() != view.sizes()) {
      throw InputError(fmt::format("{}: tensor '{}' has shape [{}], the model's parameter [{}] (model built from another "
                                   "config?)",
                                   description(), name, fmt::join(value.sizes(), ", "), fmt::join(view.sizes(), ", ")));
    }
    view.copy_(value);
  }
}

torch::Tensor ModelSource::read_unit(const UnitLayout& unit, torch::ScalarType dtype) const {
  torch::Tensor flat = torch::empty({unit.numel}, torch::TensorOptions().dtype(dtype));
  for (const auto& parameter : unit.parameters) {
    torch::Tensor value = read(parameter.name, dtype);
    if (value.numel() != parameter.numel) {
      throw InputError(fmt::format("{}: tensor '{}' has {} elements, unit '{}' expects {}", description(), parameter.name,
                                   value.numel(), unit.name, parameter.numel));
    }
    flat.narrow(0, parameter.offset, parameter.numel).copy_(value.reshape({-1}));
  }
  return flat;
}

std::unique_ptr<ModelSource> open_model_source(const std::string& path) {
  const fs::path location(path);
  if (fs::is_directory(location)) return std::make_unique<HfSafetensorsSource>(path);
  if (!fs::exists(location)) throw InputError(fmt::format("model '{}' does not exist{}", path, looked_for(path)));
  // Whether a file is a metareuse checkpoint is checkpoint/'s rule
  // (is_checkpoint_path); the commands that take one open it through there.
  throw InputError(fmt::format("model '{}' is not a folder; this takes a Hugging Face folder (config.json + "
                               "model.safetensors or model.safetensors.index.json). A metareuse checkpoint goes to "
                               "eval --model, export --checkpoint or --resume",
                               path));
}

LlamaModel load_model(const ModelSource& source, torch::TensorOptions options) {
  // Names and shapes first: the model below is sized by the config, which may
  // claim more than the files hold.
  source.check_tensors();
  LlamaModel model(source.config(), options);
  source.load_into(model);
  // NaN or infinite weights give NaN logits and a "loss" of null: an error
  // naming the tensor, before anything is computed with them.
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, value] : model.named_parameters()) {
      if (!torch::isfinite(value).all().item<bool>()) {
        throw InputError(fmt::format("{}: tensor '{}' holds {} non-finite value(s) (NaN or infinity) of {}",
                                     source.description(), name, (~torch::isfinite(value)).sum().item<int64_t>(),
                                     value.numel()));
      }
    }
  }
  log_debug("loaded {} parameters from {}", model.parameter_count(), source.description());
  return model;
}

void save_hf_model(const LlamaModel& model, const std::string& folder, std::int64_t max_shard_bytes,
                   torch::ScalarType dtype) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, tensor] : model.named_parameters()) tensors.emplace_back(name, tensor.detach().to(dtype));
  write_safetensors_checkpoint(folder, tensors, max_shard_bytes);
  const char* dtype_name = dtype == torch::kBFloat16 ? "bfloat16" : dtype == torch::kFloat16 ? "float16" : "float32";
  write_file_atomic((fs::path(folder) / "config.json").string(), model.config().to_hf_json(dtype_name).dump(2) + "\n");
}

}  // namespace metareuse
