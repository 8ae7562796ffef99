// The Llama architecture's hyperparameters, read from a Hugging Face
// config.json or taken from a named preset ("flavor"), and the parameter
// layout that follows from them: every parameter's Hugging Face name and
// shape, grouped into the units a sharding engine gathers one at a time.
//
// This header is torch-free: parameter counts come from shapes alone, so the
// 3B preset can be sized without allocating anything.
#pragma once

#include <nlohmann/json.hpp>  // nlohmann::json, config.json

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace metareuse {

// Rotary position embedding: inv_freq[i] = 1 / theta^(2i / head_dim), and
// optionally Llama 3's frequency-dependent rescaling for long contexts, or
// linear scaling (transformers' "linear": inv_freq / factor).
struct RopeConfig {
  enum class Type { kDefault, kLlama3, kLinear };
  Type type = Type::kDefault;
  double theta = 10000.0;
  // Llama 3 and linear scaling (factor), Llama 3 only (the rest).
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  std::int64_t original_max_position_embeddings = 8192;
};

// How attention is computed. Not part of config.json: a run setting
// (`model.attention`), like transformers' attn_implementation.
//   kSdpa:  scaled_dot_product_attention (the default; libtorch picks its
//           kernel: flash on sm_80+ in fp16/bf16, memory-efficient on sm_60
//           and in fp32 on CUDA, a fused CPU kernel on CPU)
//   kEager: transformers' eager_attention_forward, op by op (the reference)
enum class AttentionKind { kSdpa, kEager };
// "sdpa" / "eager"; the parser throws InputError listing both.
const char* attention_name(AttentionKind kind);
AttentionKind attention_from_name(const std::string& name);

struct LlamaConfig {
  std::int64_t vocab_size = 0;               // V
  std::int64_t hidden_size = 0;              // C
  std::int64_t intermediate_size = 0;        // F, the SwiGLU width
  std::int64_t num_hidden_layers = 0;        // L
  std::int64_t num_attention_heads = 0;      // H
  std::int64_t num_key_value_heads = 0;      // KvH; H % KvH == 0 (grouped-query attention)
  std::int64_t head_dim = 0;                 // D; C / H unless the config says otherwise
  std::int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double initializer_range = 0.02;
  RopeConfig rope;
  bool tie_word_embeddings = false;          // lm_head.weight is model.embed_tokens.weight
  std::int64_t bos_token_id = -1;            // -1: none
  std::vector<std::int64_t> eos_token_ids;   // empty: none
  AttentionKind attention = AttentionKind::kSdpa;  // a run setting, not read from or written to config.json

  // Reads a Hugging Face config.json. Both rope key styles are accepted:
  //   hub / transformers 4: "rope_theta" + "rope_scaling": {"rope_type": "llama3", ...} (or null)
  //   transformers 5:       "rope_parameters": {"rope_type": ..., "rope_theta": ..., ...}
  // Anything this implementation does not compute (another model_type, a
  // hidden_act other than silu, biases, another rope type) is an InputError
  // naming the file and the key.
  static LlamaConfig from_hf_file(const std::string& path);
  // `where` names the source in error messages.
  static LlamaConfig from_hf_json(const nlohmann::json& json, const std::string& where);
  // The top-level keys of a config.json that from_hf_json neither reads nor
  // knows to be irrelevant to the computation (from_hf_json logs a warning
  // naming each; a typo such as "rope_thetta" would otherwise pass silently).
  static std::vector<std::string> unknown_hf_keys(const nlohmann::json& json);

  // A config.json that Hugging Face transformers (4.x and 5.x) loads, in the
  // hub's key style. `dtype_name` is "float32", "bfloat16" or "float16".
  nlohmann::json to_hf_json(const std::string& dtype_name = "float32") const;

  // Named flavors: "llama3.2-1b", "llama3.2-3b", "llama3.1-8b" (the published
  // configs) and the debug flavors "debug-tiny" (the shape of
  // ../shared/fixtures/hf_tiny_llama32) and "debug-small" (vocab 8192, C 256,
  // 4 layers, the CPU training baseline's shape). Unknown names throw,
  // listing the valid ones.
  static LlamaConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();

  // Throws InputError (prefixed with `where`) if the sizes are inconsistent.
  void validate(const std::string& where) const;
};

// ---------------------------------------------------------------------------
// Parameter layout and units.
//
// A unit is a group of parameters that runs together. The model is an
// ordered list of units:
//   unit 0          "embeddings": model.embed_tokens.weight (+ lm_head.weight when untied).
//                   It runs first (token lookup) and again last (the LM head).
//   units 1..L      "layers.<i>": one decoder layer each.
//   unit L+1        "norm": model.norm.weight, the final RMSNorm.
// Execution order: embeddings, layers.0 .. layers.L-1, norm, embeddings (head).
//
// Each unit's parameters live in one flat 1-D buffer, one after the other in
// the order listed here (Hugging Face's named_parameters() order). A sharding
// engine (ZeRO-3 / FSDP) keeps a shard of each unit's flat buffer per rank,
// all-gathers the full buffer just before the unit runs, calls that unit's
// functional forward (model/llama.h) with it, and frees it after.
// ---------------------------------------------------------------------------

enum class UnitKind { kEmbeddings, kDecoderLayer, kFinalNorm };

struct UnitParameter {
  std::string name;                // Hugging Face name, "model.layers.3.self_attn.q_proj.weight"
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0;         // first element in the unit's flat buffer
  std::int64_t numel = 0;
};

struct UnitLayout {
  UnitKind kind = UnitKind::kEmbeddings;
  std::int64_t layer = -1;         // decoder layer index; -1 for the other units
  std::string name;                // "embeddings", "layers.3", "norm"
  std::vector<UnitParameter> parameters;
  std::int64_t numel = 0;          // size of the flat buffer

  // A unit of the given parameters, laid out in the order given (for models
  // other than Llama: the tests' toy model).
  static UnitLayout of(std::string name,
                       const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& parameters);
  // Appends a parameter at the end of the flat buffer: the one place that
  // computes offsets.
  void add(std::string parameter_name, std::vector<std::int64_t> shape);
  // Index of the parameter called `name` (Hugging Face name), or -1.
  int find(const std::string& name) const;
};

// What a training step's backward recomputes instead of keeping from the
// forward (train.recompute, as the memory plan decides it):
//   kNever      every unit's gathered parameters and autograd's activations are kept;
//   kSelective  units kept, but inside each decoder layer only the matmul and
//               attention outputs: the elementwise ops run again in backward
//               (model/selective_recompute.h);
//   kAlways     each unit keeps only its input and runs again whole in backward
//               (activation checkpointing; with sharding, ZeRO-3's re-gather).
enum class Recompute { kNever, kSelective, kAlways };
const char* recompute_name(Recompute mode);  // "never", "selective", "always"

// Every unit in execution order (see above). Pure arithmetic on the config.
std::vector<UnitLayout> unit_layouts(const LlamaConfig& config);

// Number of distinct parameters (the tied head counted once), from shapes only.
std::int64_t parameter_count(const LlamaConfig& config);

// The tensors a Hugging Face checkpoint of this config holds, in layout order
// (no lm_head.weight when tied).
std::vector<UnitParameter> checkpoint_parameters(const LlamaConfig& config);

}  // namespace metareuse
