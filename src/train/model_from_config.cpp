// The model a config names (model_from_config.h).
#include "metareuse/train/model_from_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join

#include <filesystem>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/model/source.h"  // open_model_source

namespace metareuse {
namespace fs = std::filesystem;

namespace {

// The model's shape (config.json's fields) from model.path or model.preset.
LlamaConfig trained_shape(const Config& config) {
  const std::string path = config.get_string("model.path");
  if (!path.empty()) {
    if (config.get_int("model.vocab_size") != 0) {
      throw ConfigError("model.vocab_size applies to a from-scratch model.preset, not to model.path");
    }
    return open_model_source(path)->config();
  }
  LlamaConfig model = LlamaConfig::preset(config.get_string("model.preset"));
  if (config.get_int("model.vocab_size") > 0) model.vocab_size = config.get_int("model.vocab_size");
  model.validate("model");
  return model;
}

// The shape `plan` sizes, which may be read before the weights are there.
LlamaConfig planned_shape(const Config& config) {
  const std::string path = config.get_string("model.path");
  if (path.empty()) return trained_shape(config);
  // A user plans before downloading: the shape comes from the folder's
  // config.json when it is there, else from the preset the config names.
  const fs::path hf_config = fs::path(path) / "config.json";
  std::error_code error;
  if (fs::exists(hf_config, error)) return LlamaConfig::from_hf_file(hf_config.string());
  const std::string preset = config.get_string("model.preset");
  if (preset != find_config_key("model.preset")->default_value.get<std::string>()) {
    log_info("model.path {} has no config.json yet: planning with model.preset={}", path, preset);
    return LlamaConfig::preset(preset);
  }
  throw ConfigError(fmt::format("plan: model.path '{}' has no config.json yet (download the weights there), and the "
                                "config names no model.preset to plan with; add --set model.preset=<name> (one of {})",
                                path, fmt::join(LlamaConfig::preset_names(), ", ")));
}

// The run settings that are not part of config.json (model.attention), the
// same on every shape.
LlamaConfig with_run_settings(LlamaConfig model, const Config& config) {
  model.attention = attention_from_name(config.get_string("model.attention"));
  return model;
}

}  // namespace

LlamaConfig model_config_from(const Config& config) { return with_run_settings(trained_shape(config), config); }

LlamaConfig plan_model_config(const Config& config) { return with_run_settings(planned_shape(config), config); }

}  // namespace metareuse
