// A checkpoint written out as a Hugging Face folder (config.json +
// safetensors), with the run's tokenizer beside the weights, through
// CheckpointModelSource, so an export gets the same checks as eval's loading
// (every parameter present, with its shape, and nothing else).
#pragma once

#include <cstdint>
#include <string>

#include "metareuse/model/config.h"  // LlamaConfig

namespace metareuse {

// The stored dtype of the weights (the checkpoint's masters are fp32).
enum class ExportDtype { kFloat32, kFloat16, kBFloat16 };

struct ExportOptions {
  std::string checkpoint;  // a ckpt-*.h5 file, or a folder with `latest`
  std::string out;         // the Hugging Face folder to write
  ExportDtype dtype = ExportDtype::kBFloat16;
  std::int64_t max_shard_bytes = 5'000'000'000;  // shard the weights above this size
};

// "fp32", "fp16" or "bf16"; ConfigError otherwise.
ExportDtype parse_export_dtype(const std::string& name);

// Rank 0's work (nothing is sharded here). The folder also gets
// generation_config.json (write_generation_config).
void export_checkpoint(const ExportOptions& options);

// generation_config.json in `folder`: the config's bos, its eos ids with the
// stop ids of the template the model was trained with (PromptFormat: the chat
// template's end of turn, so transformers' generate stops where metareuse's
// does), and the pad id that tokenizer_config.json names, else the first eos.
// `tokenizer_path` "": the config's ids only.
void write_generation_config(const LlamaConfig& config, const std::string& tokenizer_path,
                             const std::string& template_name, const std::string& folder);

}  // namespace metareuse
