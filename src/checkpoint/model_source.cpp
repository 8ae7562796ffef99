// Checkpoints as model sources.
#include "metareuse/checkpoint/model_source.h"

#include <fmt/format.h>
#include <torch/torch.h>  // NoGradGuard, copy_

#include <array>
#include <filesystem>
#include <fstream>

#include "metareuse/checkpoint/checkpoint.h"
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

void CheckpointModelSource::load_into(LlamaModel& model) const {
  auto parameters = read_checkpoint_params(path_);
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : model.named_parameters()) {
    auto found = parameters.find(name);
    if (found == parameters.end()) throw InputError(fmt::format("{}: parameter '{}' is missing", path_, name));
    if (found->second.sizes() != value.sizes()) {
      throw InputError(fmt::format("{}: parameter '{}' has shape [{}], the model expects [{}]", path_, name,
                                   fmt::join(found->second.sizes(), ", "), fmt::join(value.sizes(), ", ")));
    }
    // The views share the model's flat buffers; copying into them fills the model.
    const_cast<torch::Tensor&>(value).copy_(found->second);
  }
}

bool is_checkpoint_path(const std::string& path) {
  std::error_code error;
  if (fs::is_directory(path, error)) return fs::exists(fs::path(path) / "latest", error);
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
