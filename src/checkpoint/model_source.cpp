// Checkpoints as model sources.
#include "metareuse/checkpoint/model_source.h"

#include <fmt/format.h>
#include <torch/torch.h>  // NoGradGuard, copy_

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>

#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/checkpoint/names.h"  // kLatestPointer
#include "metareuse/core/error.h"

namespace metareuse {
namespace fs = std::filesystem;

CheckpointModelSource::CheckpointModelSource(const std::string& path)
    : path_(resolve_checkpoint(path, "")), meta_(read_checkpoint_meta(path_)) {
  if (!meta_.contains("model")) throw InputError(fmt::format("{}: checkpoint metadata has no 'model' config", path_));
  config_ = LlamaConfig::from_hf_json(meta_.at("model"), path_ + ": meta.model");
}

std::string CheckpointModelSource::description() const {
  return fmt::format("metareuse checkpoint {} (step {})", path_, meta_.value("step", 0));
}

const std::map<std::string, torch::Tensor>& CheckpointModelSource::parameters() const {
  if (!loaded_) {
    parameters_ = read_checkpoint_params(path_);
    loaded_ = true;
  }
  return parameters_;
}

void CheckpointModelSource::check_tensors() const {
  const auto& stored = parameters();
  auto expected = checkpoint_parameters(config_);
  for (const auto& parameter : expected) {
    auto found = stored.find(parameter.name);
    if (found == stored.end()) throw InputError(fmt::format("{}: parameter '{}' is missing", path_, parameter.name));
    if (found->second.sizes().vec() != parameter.shape) {
      throw InputError(fmt::format("{}: parameter '{}' has shape [{}], the model expects [{}]", path_, parameter.name,
                                   fmt::join(found->second.sizes(), ", "), fmt::join(parameter.shape, ", ")));
    }
  }
  if (stored.size() != expected.size()) {
    for (const auto& [name, value] : stored) {
      bool known = std::any_of(expected.begin(), expected.end(), [&](const UnitParameter& p) { return p.name == name; });
      if (!known) throw InputError(fmt::format("{}: unexpected parameter '{}' for this model config", path_, name));
    }
  }
}

torch::Tensor CheckpointModelSource::read(const std::string& name, torch::ScalarType dtype) const {
  const auto& stored = parameters();
  auto found = stored.find(name);
  if (found == stored.end()) throw InputError(fmt::format("{}: parameter '{}' is missing", path_, name));
  return found->second.to(dtype);
}

std::optional<TextFormat> CheckpointModelSource::trained_text() const {
  if (meta_.contains("text") && meta_.at("text").is_object()) return TextFormat::from_json(meta_.at("text"));
  if (meta_.contains("config") && meta_.at("config").is_object() && meta_.at("config").contains("tokenizer") &&
      meta_.at("config").at("tokenizer").is_object()) {
    // A checkpoint older than the meta's "text": its config's tokenizer keys.
    const nlohmann::json& tokenizer = meta_.at("config").at("tokenizer");
    TextFormat format;
    format.tokenizer = tokenizer.value("path", "");
    format.template_name = tokenizer.value("template", "");
    return format;
  }
  return std::nullopt;
}

bool is_checkpoint_path(const std::string& path) {
  std::error_code error;
  if (fs::is_directory(path, error)) return fs::exists(fs::path(path) / kLatestPointer, error);
  std::ifstream in(path, std::ios::binary);
  std::array<char, 8> signature{};
  if (!in.read(signature.data(), signature.size())) return false;
  return std::string(signature.data(), signature.size()) == "\x89HDF\r\n\x1a\n";
}

std::unique_ptr<ModelSource> open_model_or_checkpoint(const std::string& path) {
  if (is_checkpoint_path(path)) return std::make_unique<CheckpointModelSource>(path);
  return open_model_source(path);
}

}  // namespace metareuse
