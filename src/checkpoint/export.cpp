#include "metareuse/checkpoint/export.h"

#include <fmt/format.h>
#include <torch/torch.h>  // dtypes

#include <filesystem>

#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat, tokenizer_files

namespace metareuse {
namespace fs = std::filesystem;

ExportDtype parse_export_dtype(const std::string& name) {
  if (name == "fp32") return ExportDtype::kFloat32;
  if (name == "fp16") return ExportDtype::kFloat16;
  if (name == "bf16") return ExportDtype::kBFloat16;
  throw ConfigError(fmt::format("export dtype must be fp32, fp16 or bf16, got '{}'", name));
}

void export_checkpoint(const ExportOptions& options) {
  const CheckpointModelSource source(options.checkpoint);
  LlamaModel model = load_model(source);
  const torch::ScalarType dtype = options.dtype == ExportDtype::kFloat32   ? torch::kFloat32
                                  : options.dtype == ExportDtype::kFloat16 ? torch::kFloat16
                                                                           : torch::kBFloat16;
  save_hf_model(model, options.out, options.max_shard_bytes, dtype);
  // The tokenizer the run used travels with the weights, with its
  // tokenizer_config.json and chat template: the export is then a model folder
  // whose own template is the one trained with (and transformers loads its tokenizer).
  const nlohmann::json& meta = source.meta();
  const std::optional<TextFormat> trained = source.trained_text();
  const std::string tokenizer = trained ? trained->tokenizer : "";
  if (!tokenizer.empty() && fs::exists(tokenizer)) {
    for (const std::string& file : tokenizer_files(tokenizer)) {
      fs::copy_file(file, fs::path(options.out) / fs::path(file).filename(), fs::copy_options::overwrite_existing);
    }
  }
  const char* dtype_name = options.dtype == ExportDtype::kFloat32   ? "fp32"
                           : options.dtype == ExportDtype::kFloat16 ? "fp16"
                                                                    : "bf16";
  log_info("exported {} (step {}) to {} as {}", source.path(), meta.value("step", 0), options.out, dtype_name);
}

}  // namespace metareuse
