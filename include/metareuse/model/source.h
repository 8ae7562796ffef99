// Where a model comes from. `metareuse forward/generate --model PATH` opens a
// ModelSource and loads from it; today that is a Hugging Face folder
// (config.json + model.safetensors or a sharded index); a metareuse HDF5
// checkpoint becomes another ModelSource subclass returned by
// open_model_source, and nothing downstream changes.
#pragma once

#include <torch/types.h>  // torch::TensorOptions

#include <cstdint>
#include <memory>
#include <string>

#include "metareuse/model/config.h"
#include "metareuse/model/llama.h"

namespace metareuse {

class ModelSource {
 public:
  virtual ~ModelSource() = default;
  virtual const LlamaConfig& config() const = 0;
  // For logs and errors: the folder and the file(s) read.
  virtual std::string description() const = 0;
  // Checks that the source holds exactly the parameters config() implies,
  // with their shapes, before any data is read. A missing tensor, an
  // unexpected tensor or a wrong shape is an InputError naming the tensor and
  // the file.
  virtual void check_tensors() const = 0;
  // One parameter by its Hugging Face name, converted to `dtype` (an
  // unreadable dtype is an InputError naming the tensor and the file).
  virtual torch::Tensor read(const std::string& name, torch::ScalarType dtype) const = 0;

  // check_tensors(), then every parameter copied into `model` (built from config()).
  void load_into(LlamaModel& model) const;
  // One unit's flat buffer (UnitLayout order) in `dtype`: what a sharding
  // engine materialises unit by unit, without building the whole model.
  torch::Tensor read_unit(const UnitLayout& unit, torch::ScalarType dtype) const;
};

// A Hugging Face model folder: config.json plus model.safetensors or
// model.safetensors.index.json with its shards.
class HfSafetensorsSource : public ModelSource {
 public:
  explicit HfSafetensorsSource(const std::string& folder);
  ~HfSafetensorsSource() override;
  const LlamaConfig& config() const override { return config_; }
  std::string description() const override;
  void check_tensors() const override;
  torch::Tensor read(const std::string& name, torch::ScalarType dtype) const override;

 private:
  struct Checkpoint;
  std::string folder_;
  LlamaConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
};

// Picks the source for `path` (today: a Hugging Face folder). The error for
// anything else says what --model accepts.
std::unique_ptr<ModelSource> open_model_source(const std::string& path);

// A model built from the source's config with `options` and its weights loaded.
LlamaModel load_model(const ModelSource& source, torch::TensorOptions options = torch::TensorOptions());

// Writes `model` as a Hugging Face folder: config.json (hub key style) and
// model.safetensors, or shards of at most `max_shard_bytes` plus
// model.safetensors.index.json. Tensors are stored in `dtype`; the tied head
// is not stored (as save_pretrained does).
void save_hf_model(const LlamaModel& model, const std::string& folder, std::int64_t max_shard_bytes = 5'000'000'000,
                   torch::ScalarType dtype = torch::kFloat32);

}  // namespace metareuse
