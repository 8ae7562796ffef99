// A metareuse HDF5 checkpoint as a ModelSource (model/source.h), so eval,
// generate and forward can read a training run's weights without an export.
// The checkpoint stage depends on the model stage, never the reverse: the CLI
// picks the source with open_model_or_checkpoint().
#pragma once

#include <nlohmann/json.hpp>  // checkpoint metadata

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "metareuse/model/source.h"
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat

namespace metareuse {

class CheckpointModelSource : public ModelSource {
 public:
  // `path`: a ckpt-*.h5 file, or a checkpoint folder (its `latest`).
  explicit CheckpointModelSource(const std::string& path);
  const LlamaConfig& config() const override { return config_; }
  std::string description() const override;
  // The checkpoint holds exactly the parameters of config(), with their shapes.
  void check_tensors() const override;
  // One fp32 master weight, converted to `dtype`.
  torch::Tensor read(const std::string& name, torch::ScalarType dtype) const override;
  const nlohmann::json& meta() const { return meta_; }
  const std::string& path() const { return path_; }
  // The tokenizer and template the checkpoint was trained with: its meta's
  // "text" (train/train_state.h), or for checkpoints older than that key its
  // config's tokenizer.path and tokenizer.template; nullopt with neither.
  // Eval's and export's one rule for it.
  std::optional<TextFormat> trained_text() const;

 private:
  std::string path_;
  nlohmann::json meta_;
  LlamaConfig config_;
  // Every fp32 parameter, read on first use (one pass over the file).
  const std::map<std::string, torch::Tensor>& parameters() const;
  mutable std::map<std::string, torch::Tensor> parameters_;
  mutable bool loaded_ = false;
};

// True when `path` is an HDF5 checkpoint file (by its signature) or a folder
// holding a `latest` pointer.
bool is_checkpoint_path(const std::string& path);

// A checkpoint source for a checkpoint, open_model_source() otherwise.
std::unique_ptr<ModelSource> open_model_or_checkpoint(const std::string& path);

}  // namespace metareuse
