// The model a config names, for training (model_config_from) and for a memory
// plan made before the weights are downloaded (plan_model_config).
#pragma once

#include "metareuse/core/config.h"
#include "metareuse/model/config.h"  // LlamaConfig

namespace metareuse {

// The model the config names: model.path's config.json, or model.preset
// (with model.vocab_size when set); model.attention on either.
LlamaConfig model_config_from(const Config& config);
// The model `plan` sizes: model.path's config.json when it is there (weights
// need not be), else the model.preset the config names, else an error saying how.
LlamaConfig plan_model_config(const Config& config);

}  // namespace metareuse
