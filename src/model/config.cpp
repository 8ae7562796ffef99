// Llama hyperparameters from Hugging Face config.json, presets, and the
// parameter layout (units). No torch here: sizes are plain arithmetic.
#include "metareuse/model/config.h"

#include <fmt/format.h>  // messages

#include <algorithm>
#include <fstream>
#include <map>

#include "metareuse/core/error.h"
#include "metareuse/core/json_input.h"  // model-folder JSON, depth-bounded
#include "metareuse/core/log.h"  // unknown config keys
#include "metareuse/core/looked_for.h"

namespace metareuse {

const char* attention_name(AttentionKind kind) { return kind == AttentionKind::kSdpa ? "sdpa" : "eager"; }

AttentionKind attention_from_name(const std::string& name) {
  if (name == "sdpa") return AttentionKind::kSdpa;
  if (name == "eager") return AttentionKind::kEager;
  throw InputError(fmt::format("attention '{}' is not one of: sdpa, eager", name));
}

const char* recompute_name(Recompute mode) {
  switch (mode) {
    case Recompute::kNever: return "never";
    case Recompute::kSelective: return "selective";
    case Recompute::kAlways: return "always";
  }
  return "?";
}

namespace {

using json = nlohmann::json;

[[noreturn]] void config_error(const std::string& where, const std::string& key, const std::string& what) {
  throw InputError(fmt::format("{}: key '{}': {}", where, key, what));
}

std::int64_t get_positive_int(const json& object, const std::string& key, const std::string& where,
                              std::int64_t fallback = -1) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (fallback > 0) return fallback;
    config_error(where, key, "missing (a positive integer is required)");
  }
  if (!it->is_number_integer() || it->get<std::int64_t>() <= 0) {
    config_error(where, key, fmt::format("must be a positive integer, got {}", it->dump()));
  }
  return it->get<std::int64_t>();
}

double get_number(const json& object, const std::string& key, const std::string& where, double fallback,
                  bool required = false) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (required) config_error(where, key, "missing (a number is required)");
    return fallback;
  }
  if (!it->is_number()) config_error(where, key, fmt::format("must be a number, got {}", it->dump()));
  return it->get<double>();
}

bool get_bool(const json& object, const std::string& key, const std::string& where, bool fallback) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) config_error(where, key, fmt::format("must be true or false, got {}", it->dump()));
  return it->get<bool>();
}

// Reads the rope fields of one object: the transformers-5 "rope_parameters"
// object, or the hub's "rope_scaling" object (theta then comes from the top level).
RopeConfig parse_rope(const json& rope_object, const std::string& object_key, double theta,
                      const std::string& where) {
  RopeConfig rope;
  rope.theta = theta;
  if (rope_object.is_null()) return rope;
  if (!rope_object.is_object()) config_error(where, object_key, "must be an object or null");
  std::string type = "default";
  // transformers 4.4x wrote "rope_type"; older files wrote "type".
  for (const char* type_key : {"rope_type", "type"}) {
    auto it = rope_object.find(type_key);
    if (it != rope_object.end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  const std::string prefix = object_key + ".";
  if (type == "default") {
    rope.type = RopeConfig::Type::kDefault;
  } else if (type == "llama3") {
    rope.type = RopeConfig::Type::kLlama3;
    rope.factor = get_number(rope_object, "factor", where + " (" + object_key + ")", 0, true);
    rope.low_freq_factor = get_number(rope_object, "low_freq_factor", where + " (" + object_key + ")", 0, true);
    rope.high_freq_factor = get_number(rope_object, "high_freq_factor", where + " (" + object_key + ")", 0, true);
    rope.original_max_position_embeddings =
        get_positive_int(rope_object, "original_max_position_embeddings", where + " (" + object_key + ")");
    if (rope.factor <= 0) config_error(where, prefix + "factor", "must be > 0");
    if (rope.high_freq_factor <= rope.low_freq_factor) {
      config_error(where, prefix + "high_freq_factor", "must be greater than low_freq_factor");
    }
  } else if (type == "linear") {
    rope.type = RopeConfig::Type::kLinear;
    rope.factor = get_number(rope_object, "factor", where + " (" + object_key + ")", 0, true);
    if (rope.factor <= 0) config_error(where, prefix + "factor", "must be > 0");
  } else {
    config_error(where, prefix + "rope_type",
                 fmt::format("'{}' is not supported (metareuse computes 'default', 'llama3' and 'linear')", type));
  }
  return rope;
}

// Every top-level config.json key, by what happens to it. The hub's files and
// transformers 4.x/5.x's save_pretrained (SmolLM2's and Llama 3.2's folders
// among them) use only these.
const std::vector<std::string>& read_keys() {
  static const std::vector<std::string> keys = {
      "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
      "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "initializer_range",
      "tie_word_embeddings", "bos_token_id", "eos_token_id", "rope_parameters", "rope_theta", "rope_scaling",
      // checked for the values this implementation computes
      "model_type", "hidden_act", "attention_bias", "mlp_bias", "pretraining_tp"};
  return keys;
}
// Keys that do not change the forward pass: metadata, generation and
// inference-engine settings, and dropout (training here uses none).
const std::vector<std::string>& ignored_keys() {
  static const std::vector<std::string> keys = {
      "architectures", "transformers_version", "torch_dtype", "dtype", "use_cache", "pad_token_id", "unk_token_id",
      "attention_dropout", "_name_or_path", "_model_name_or_path", "output_attentions", "output_hidden_states",
      "return_dict", "is_decoder", "is_encoder_decoder", "tokenizer_class", "task_specific_params", "id2label",
      "label2id", "problem_type", "chunk_size_feed_forward", "tf_legacy_loss", "use_bfloat16", "torchscript",
      "pruned_heads", "cross_attention_hidden_size", "add_cross_attention", "decoder_start_token_id",
      "sep_token_id", "prefix", "finetuning_task", "tie_encoder_decoder", "quantization_config"};
  return keys;
}

}  // namespace

std::vector<std::string> LlamaConfig::unknown_hf_keys(const json& tree) {
  std::vector<std::string> unknown;
  if (!tree.is_object()) return unknown;
  for (const auto& [key, value] : tree.items()) {
    auto known = [&](const std::vector<std::string>& keys) {
      return std::find(keys.begin(), keys.end(), key) != keys.end();
    };
    if (!known(read_keys()) && !known(ignored_keys())) unknown.push_back(key);
  }
  return unknown;
}

LlamaConfig LlamaConfig::from_hf_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("cannot open model config '{}': {}", path, why_unreadable(path)));
  json tree;
  try {
    tree = parse_json_input(path, in);
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  return from_hf_json(tree, path);
}

LlamaConfig LlamaConfig::from_hf_json(const json& tree, const std::string& where) {
  if (!tree.is_object()) throw InputError(fmt::format("{}: a config.json must be a JSON object", where));
  for (const auto& key : unknown_hf_keys(tree)) {
    log_warn("{}: key '{}' is not known to metareuse and is ignored", where, key);
  }
  auto model_type = tree.find("model_type");
  if (model_type != tree.end() && model_type->is_string() && model_type->get<std::string>() != "llama") {
    config_error(where, "model_type", fmt::format("'{}' is not supported (only 'llama')", model_type->get<std::string>()));
  }
  auto act = tree.find("hidden_act");
  if (act != tree.end() && act->is_string() && act->get<std::string>() != "silu") {
    config_error(where, "hidden_act", fmt::format("'{}' is not supported (only 'silu')", act->get<std::string>()));
  }
  for (const char* bias_key : {"attention_bias", "mlp_bias"}) {
    if (get_bool(tree, bias_key, where, false)) config_error(where, bias_key, "biases are not supported (must be false)");
  }
  auto tp = tree.find("pretraining_tp");
  if (tp != tree.end() && tp->is_number_integer() && tp->get<std::int64_t>() != 1) {
    config_error(where, "pretraining_tp", "only 1 is supported");
  }

  LlamaConfig config;
  config.vocab_size = get_positive_int(tree, "vocab_size", where);
  config.hidden_size = get_positive_int(tree, "hidden_size", where);
  config.intermediate_size = get_positive_int(tree, "intermediate_size", where);
  config.num_hidden_layers = get_positive_int(tree, "num_hidden_layers", where);
  config.num_attention_heads = get_positive_int(tree, "num_attention_heads", where);
  config.num_key_value_heads = get_positive_int(tree, "num_key_value_heads", where, config.num_attention_heads);
  if (config.hidden_size % config.num_attention_heads != 0 && tree.find("head_dim") == tree.end()) {
    config_error(where, "head_dim", "missing, and hidden_size is not a multiple of num_attention_heads");
  }
  config.head_dim = get_positive_int(tree, "head_dim", where, config.hidden_size / config.num_attention_heads);
  config.max_position_embeddings = get_positive_int(tree, "max_position_embeddings", where, 2048);
  config.rms_norm_eps = get_number(tree, "rms_norm_eps", where, 1e-6);
  config.initializer_range = get_number(tree, "initializer_range", where, 0.02);
  config.tie_word_embeddings = get_bool(tree, "tie_word_embeddings", where, false);

  auto bos = tree.find("bos_token_id");
  if (bos != tree.end() && bos->is_number_integer()) config.bos_token_id = bos->get<std::int64_t>();
  auto eos = tree.find("eos_token_id");
  if (eos != tree.end()) {
    if (eos->is_number_integer()) {
      config.eos_token_ids.push_back(eos->get<std::int64_t>());
    } else if (eos->is_array()) {
      for (const auto& id : *eos) {
        if (!id.is_number_integer()) config_error(where, "eos_token_id", "must be an integer or a list of integers");
        config.eos_token_ids.push_back(id.get<std::int64_t>());
      }
    } else if (!eos->is_null()) {
      config_error(where, "eos_token_id", "must be an integer or a list of integers");
    }
  }

  auto parameters = tree.find("rope_parameters");
  if (parameters != tree.end() && !parameters->is_null()) {
    // transformers 5: theta lives inside rope_parameters.
    if (!parameters->is_object()) config_error(where, "rope_parameters", "must be an object");
    double theta = get_number(*parameters, "rope_theta", where + " (rope_parameters)", 0, true);
    config.rope = parse_rope(*parameters, "rope_parameters", theta, where);
  } else {
    double theta = get_number(tree, "rope_theta", where, 10000.0);
    auto scaling = tree.find("rope_scaling");
    config.rope = parse_rope(scaling == tree.end() ? json(nullptr) : *scaling, "rope_scaling", theta, where);
  }
  config.validate(where);
  return config;
}

void LlamaConfig::validate(const std::string& where) const {
  auto positive = [&](std::int64_t value, const char* key) {
    if (value <= 0) config_error(where, key, fmt::format("must be positive, got {}", value));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  if (num_attention_heads % num_key_value_heads != 0) {
    config_error(where, "num_key_value_heads",
                 fmt::format("{} does not divide num_attention_heads = {}", num_key_value_heads, num_attention_heads));
  }
  if (head_dim % 2 != 0) config_error(where, "head_dim", "must be even (rotary embedding rotates pairs)");
  if (!(rms_norm_eps > 0)) config_error(where, "rms_norm_eps", "must be > 0");
  if (!(rope.theta > 0)) config_error(where, "rope_theta", "must be > 0");
}

json LlamaConfig::to_hf_json(const std::string& dtype_name) const {
  json tree;
  tree["architectures"] = {"LlamaForCausalLM"};
  tree["model_type"] = "llama";
  tree["attention_bias"] = false;
  tree["attention_dropout"] = 0.0;
  tree["mlp_bias"] = false;
  tree["hidden_act"] = "silu";
  tree["pretraining_tp"] = 1;
  tree["vocab_size"] = vocab_size;
  tree["hidden_size"] = hidden_size;
  tree["intermediate_size"] = intermediate_size;
  tree["num_hidden_layers"] = num_hidden_layers;
  tree["num_attention_heads"] = num_attention_heads;
  tree["num_key_value_heads"] = num_key_value_heads;
  tree["head_dim"] = head_dim;
  tree["max_position_embeddings"] = max_position_embeddings;
  tree["rms_norm_eps"] = rms_norm_eps;
  tree["initializer_range"] = initializer_range;
  tree["tie_word_embeddings"] = tie_word_embeddings;
  tree["use_cache"] = true;
  tree["torch_dtype"] = dtype_name;
  tree["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  if (eos_token_ids.empty()) {
    tree["eos_token_id"] = nullptr;
  } else if (eos_token_ids.size() == 1) {
    tree["eos_token_id"] = eos_token_ids[0];
  } else {
    tree["eos_token_id"] = eos_token_ids;
  }
  tree["rope_theta"] = rope.theta;
  if (rope.type == RopeConfig::Type::kLlama3) {
    tree["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", rope.factor},
                            {"low_freq_factor", rope.low_freq_factor},
                            {"high_freq_factor", rope.high_freq_factor},
                            {"original_max_position_embeddings", rope.original_max_position_embeddings}};
  } else if (rope.type == RopeConfig::Type::kLinear) {
    tree["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope.factor}};
  } else {
    tree["rope_scaling"] = nullptr;
  }
  return tree;
}

namespace {

LlamaConfig llama3_base(double rope_factor) {
  LlamaConfig config;
  config.vocab_size = 128256;
  config.max_position_embeddings = 131072;
  config.rms_norm_eps = 1e-5;
  config.rope.type = RopeConfig::Type::kLlama3;
  config.rope.theta = 500000.0;
  config.rope.factor = rope_factor;
  config.rope.low_freq_factor = 1.0;
  config.rope.high_freq_factor = 4.0;
  config.rope.original_max_position_embeddings = 8192;
  config.bos_token_id = 128000;
  config.eos_token_ids = {128001};
  return config;
}

// The published meta-llama config.json files, and debug flavors.
const std::map<std::string, LlamaConfig>& presets() {
  static const std::map<std::string, LlamaConfig> table = [] {
    std::map<std::string, LlamaConfig> out;
    LlamaConfig one_b = llama3_base(32.0);
    one_b.hidden_size = 2048;
    one_b.intermediate_size = 8192;
    one_b.num_hidden_layers = 16;
    one_b.num_attention_heads = 32;
    one_b.num_key_value_heads = 8;
    one_b.head_dim = 64;
    one_b.tie_word_embeddings = true;
    out["llama3.2-1b"] = one_b;

    LlamaConfig three_b = llama3_base(32.0);
    three_b.hidden_size = 3072;
    three_b.intermediate_size = 8192;
    three_b.num_hidden_layers = 28;
    three_b.num_attention_heads = 24;
    three_b.num_key_value_heads = 8;
    three_b.head_dim = 128;
    three_b.tie_word_embeddings = true;
    out["llama3.2-3b"] = three_b;

    LlamaConfig eight_b = llama3_base(8.0);
    eight_b.hidden_size = 4096;
    eight_b.intermediate_size = 14336;
    eight_b.num_hidden_layers = 32;
    eight_b.num_attention_heads = 32;
    eight_b.num_key_value_heads = 8;
    eight_b.head_dim = 128;
    eight_b.tie_word_embeddings = false;
    out["llama3.1-8b"] = eight_b;

    // ../shared/fixtures/hf_tiny_llama32: tied, GQA 2:1, llama3 rope.
    LlamaConfig tiny;
    tiny.vocab_size = 512;
    tiny.hidden_size = 64;
    tiny.intermediate_size = 176;
    tiny.num_hidden_layers = 2;
    tiny.num_attention_heads = 4;
    tiny.num_key_value_heads = 2;
    tiny.head_dim = 16;
    tiny.max_position_embeddings = 256;
    tiny.rms_norm_eps = 1e-5;
    tiny.rope = {RopeConfig::Type::kLlama3, 500000.0, 32.0, 1.0, 4.0, 64};
    tiny.tie_word_embeddings = true;
    tiny.bos_token_id = 1;
    tiny.eos_token_ids = {2};
    out["debug-tiny"] = tiny;

    // The CPU training baseline's shape (bench/train/torch_loop.py): vocab 8192, C 256, 4 layers, 8 heads, 4 KV heads, FFN 688.
    LlamaConfig small;
    small.vocab_size = 8192;
    small.hidden_size = 256;
    small.intermediate_size = 688;
    small.num_hidden_layers = 4;
    small.num_attention_heads = 8;
    small.num_key_value_heads = 4;
    small.head_dim = 32;
    small.max_position_embeddings = 2048;
    small.rms_norm_eps = 1e-5;
    small.rope = {RopeConfig::Type::kDefault, 500000.0, 1.0, 1.0, 4.0, 8192};
    small.tie_word_embeddings = true;
    small.bos_token_id = 1;
    small.eos_token_ids = {2};
    out["debug-small"] = small;
    return out;
  }();
  return table;
}

}  // namespace

LlamaConfig LlamaConfig::preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    throw InputError(fmt::format("unknown model preset '{}'; valid presets: {}", name, fmt::join(preset_names(), ", ")));
  }
  return it->second;
}

std::vector<std::string> LlamaConfig::preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, config] : presets()) names.push_back(name);
  return names;
}

int UnitLayout::find(const std::string& parameter_name) const {
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    if (parameters[i].name == parameter_name) return static_cast<int>(i);
  }
  return -1;
}

void UnitLayout::add(std::string parameter_name, std::vector<std::int64_t> shape) {
  UnitParameter parameter;
  parameter.name = std::move(parameter_name);
  parameter.shape = std::move(shape);
  parameter.numel = 1;
  for (auto d : parameter.shape) parameter.numel *= d;
  parameter.offset = numel;
  numel += parameter.numel;
  parameters.push_back(std::move(parameter));
}

UnitLayout UnitLayout::of(std::string name,
                          const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& parameters) {
  UnitLayout unit;
  unit.name = std::move(name);
  for (const auto& [parameter_name, shape] : parameters) unit.add(parameter_name, shape);
  return unit;
}

std::vector<UnitLayout> unit_layouts(const LlamaConfig& config) {
  const std::int64_t C = config.hidden_size;
  const std::int64_t V = config.vocab_size;
  const std::int64_t F = config.intermediate_size;
  const std::int64_t q_width = config.num_attention_heads * config.head_dim;
  const std::int64_t kv_width = config.num_key_value_heads * config.head_dim;

  std::vector<UnitLayout> units;
  UnitLayout embeddings;
  embeddings.kind = UnitKind::kEmbeddings;
  embeddings.name = "embeddings";
  embeddings.add("model.embed_tokens.weight", {V, C});
  if (!config.tie_word_embeddings) embeddings.add("lm_head.weight", {V, C});
  units.push_back(std::move(embeddings));

  for (std::int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    UnitLayout unit;
    unit.kind = UnitKind::kDecoderLayer;
    unit.layer = layer;
    unit.name = fmt::format("layers.{}", layer);
    const std::string prefix = fmt::format("model.layers.{}.", layer);
    // Hugging Face's named_parameters() order.
    unit.add(prefix + "self_attn.q_proj.weight", {q_width, C});
    unit.add(prefix + "self_attn.k_proj.weight", {kv_width, C});
    unit.add(prefix + "self_attn.v_proj.weight", {kv_width, C});
    unit.add(prefix + "self_attn.o_proj.weight", {C, q_width});
    unit.add(prefix + "mlp.gate_proj.weight", {F, C});
    unit.add(prefix + "mlp.up_proj.weight", {F, C});
    unit.add(prefix + "mlp.down_proj.weight", {C, F});
    unit.add(prefix + "input_layernorm.weight", {C});
    unit.add(prefix + "post_attention_layernorm.weight", {C});
    units.push_back(std::move(unit));
  }

  UnitLayout norm;
  norm.kind = UnitKind::kFinalNorm;
  norm.name = "norm";
  norm.add("model.norm.weight", {C});
  units.push_back(std::move(norm));
  return units;
}

std::int64_t parameter_count(const LlamaConfig& config) {
  std::int64_t total = 0;
  for (const auto& unit : unit_layouts(config)) total += unit.numel;
  return total;
}

std::vector<UnitParameter> checkpoint_parameters(const LlamaConfig& config) {
  std::vector<UnitParameter> out;
  for (const auto& unit : unit_layouts(config)) {
    for (const auto& parameter : unit.parameters) out.push_back(parameter);
  }
  return out;
}

}  // namespace metareuse
