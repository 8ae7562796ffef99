#include "metareuse/checkpoint/export.h"

#include <fmt/format.h>
#include <torch/torch.h>  // dtypes

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"     // write_file_atomic
#include "metareuse/core/json_input.h"  // tokenizer_config.json is the model folder's
#include "metareuse/core/log.h"
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat, tokenizer_files, PromptFormat's stop ids
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
namespace fs = std::filesystem;

namespace {

// The pad token tokenizer_config.json names ("pad_token": "<|im_end|>" or
// {"content": ...}), as an id of `tokenizer`; none when it names none.
std::optional<TokenId> configured_pad_id(const std::string& tokenizer_path, const Tokenizer& tokenizer) {
  const fs::path config = fs::path(tokenizer_path).parent_path() / "tokenizer_config.json";
  std::ifstream in(config);
  if (!in) return std::nullopt;
  nlohmann::json tree;
  try {
    tree = parse_json_input(config.string(), in);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // training read the same folder; its tokenizer loader names a broken file
  }
  if (!tree.is_object() || !tree.contains("pad_token")) return std::nullopt;
  const nlohmann::json& pad = tree["pad_token"];
  const nlohmann::json& text = pad.is_object() && pad.contains("content") ? pad["content"] : pad;
  if (!text.is_string()) return std::nullopt;
  return tokenizer.special_id(text.get<std::string>());
}

}  // namespace

void write_generation_config(const LlamaConfig& config, const std::string& tokenizer_path,
                             const std::string& template_name, const std::string& folder) {
  std::vector<TokenId> eos(config.eos_token_ids.begin(), config.eos_token_ids.end());
  std::optional<TokenId> pad;
  if (!tokenizer_path.empty()) {
    const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(tokenizer_path);
    const PromptFormat format(*tokenizer, template_name, tokenizer_path);
    for (TokenId stop : format.stop_ids()) {
      if (std::find(eos.begin(), eos.end(), stop) == eos.end()) eos.push_back(stop);
    }
    pad = configured_pad_id(tokenizer_path, *tokenizer);
  }
  nlohmann::ordered_json tree;
  tree["bos_token_id"] = config.bos_token_id >= 0 ? nlohmann::ordered_json(config.bos_token_id) : nlohmann::ordered_json(nullptr);
  if (eos.size() == 1) {
    tree["eos_token_id"] = eos[0];
  } else {
    tree["eos_token_id"] = eos;  // empty: null-like list, generate then runs to max_new_tokens
  }
  // Without a pad token transformers pads batches with the first eos (and
  // warns); the export says so itself.
  if (!pad && !eos.empty()) pad = eos[0];
  tree["pad_token_id"] = pad ? nlohmann::ordered_json(*pad) : nlohmann::ordered_json(nullptr);
  write_file_atomic((fs::path(folder) / "generation_config.json").string(), tree.dump(2) + "\n");
}

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
  write_generation_config(model.config(), tokenizer.empty() || !fs::exists(tokenizer) ? "" : tokenizer,
                          trained ? trained->template_name : "", options.out);
  const char* dtype_name = options.dtype == ExportDtype::kFloat32   ? "fp32"
                           : options.dtype == ExportDtype::kFloat16 ? "fp16"
                                                                    : "bf16";
  log_info("exported {} (step {}) to {} as {}", source.path(), meta.value("step", 0), options.out, dtype_name);
}

}  // namespace metareuse
