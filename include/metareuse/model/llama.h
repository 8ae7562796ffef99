// Llama 3.x in libtorch, computing what Hugging Face transformers'
// LlamaForCausalLM computes (eager attention), with Hugging Face parameter
// names and a KV cache.
//
// Dimensions, used in the shape comments:
//   B batch, T new tokens, S tokens attended to (past + T), C hidden_size,
//   H attention heads, KvH key/value heads, D head_dim, F intermediate_size, V vocab_size.
//
// THE UNIT INTERFACE (what sharded training runs unit by unit)
// ---------------------------------------------------
// The model is an ordered list of units (config.h: unit_layouts()):
//   embeddings (token lookup; later the LM head), layers.0 .. layers.L-1, norm.
// Each unit's parameters are ONE flat 1-D tensor, laid out as its UnitLayout
// says. The functional forwards below take that flat tensor as an argument
// and own nothing, so a sharding engine can run a step as
//
//   flat = all_gather(shard[u]);             // full flat buffer of unit u
//   hidden = decoder_layer_forward(config, layout[u], flat, hidden, rotary, nullptr);
//   free(flat);
//
// and wrap each call in the one torch::autograd::Function that gathers again
// and recomputes in backward (the sharding engine's, parallel/fsdp.h: training's
// one recompute rule). The order of calls (llama_trunk_forward) is:
//   embedding_forward(units[0]) -> decoder_layer_forward(units[1..L]) ->
//   final_norm_forward(units[L+1]) -> head_forward(units[0]).
// Gradients w.r.t. a flat buffer come back as one flat tensor of the same
// layout, ready for a reduce-scatter.
#pragma once

#include <torch/types.h>  // torch::Tensor

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "metareuse/model/config.h"

namespace metareuse {

// --------------------------------------------------------------- rotary ----

// inv_freq (D/2,) in fp32, computed as transformers computes it (fp32 pow;
// then Llama 3's per-frequency rescaling when the config asks for it).
torch::Tensor rope_inv_freq(const LlamaConfig& config);

// cos and sin for positions [start, start + length), each (length, D), in
// `dtype` on `device`. Computed in fp32 as transformers does, then cast.
struct RotaryTables {
  torch::Tensor cos;  // (T, D)
  torch::Tensor sin;  // (T, D)
};
RotaryTables rope_tables(const torch::Tensor& inv_freq, std::int64_t start, std::int64_t length,
                         torch::ScalarType dtype, torch::Device device);
// The same for per-token positions (B, T) int64: tables (B, 1, T, D), which
// broadcast over the heads. Packed sequences restart positions per document.
RotaryTables rope_tables_at(const torch::Tensor& inv_freq, const torch::Tensor& positions, torch::ScalarType dtype,
                            torch::Device device);

// ------------------------------------------------------- packed documents ----

// Several documents in one row (packing), as transformers'
// DataCollatorWithFlattening passes them: positions restart at 0 for each
// document, and attention does not cross a document boundary.
struct DocumentLayout {
  torch::Tensor positions;    // (B, T) int64: position within the document, 0 on padding
  torch::Tensor segment_ids;  // (B, T) int64: document index within the row, -1 on padding
  bool defined() const { return segment_ids.defined(); }
};

// (B, 1, T, T) bool, true where query i may attend key j: the same document
// and j <= i (block-diagonal causal). A padding token attends only itself, so
// no row of the softmax is empty (its output carries no loss).
torch::Tensor document_attention_mask(const torch::Tensor& segment_ids);

// Left-padded rows that share a KV cache's columns (batched generation):
// every row appends at the same column, each token keeps the position it has
// in its own sequence, and the padding is hidden.
struct LeftPadding {
  torch::Tensor positions;  // (B, T) int64: each new token's position in its own sequence
  torch::Tensor key_valid;  // (B, cache length + T) bool: the column holds a real token of the row
  bool defined() const { return positions.defined(); }
};

// ------------------------------------------------------------- KV cache ----

// Keys and values of every layer for the tokens seen so far, in buffers with
// room for `capacity` positions (doubled when exceeded), so appending a token
// costs O(1) copies rather than a concatenation of the whole past.
class KvCache {
 public:
  KvCache(const LlamaConfig& config, std::int64_t batch, std::int64_t capacity, torch::TensorOptions options);

  std::int64_t length() const { return length_; }   // positions stored (committed)
  std::int64_t capacity() const { return capacity_; }
  // Writes `keys`/`values` (B, KvH, T, D) of `layer` at positions
  // [length, length + T) and returns that layer's keys and values so far,
  // each (B, KvH, length + T, D) (views into the buffers).
  std::pair<torch::Tensor, torch::Tensor> append(std::int64_t layer, const torch::Tensor& keys,
                                                 const torch::Tensor& values);
  // Commits the T positions every layer has appended.
  void advance(std::int64_t count) { length_ += count; }
  void clear() { length_ = 0; }
  // Keeps only these rows (int64 indices, in this order), e.g. once the other
  // sequences of a batch have stopped.
  void keep_rows(const torch::Tensor& rows);

 private:
  void grow(std::int64_t needed);

  std::vector<torch::Tensor> keys_;    // per layer (B, KvH, capacity, D)
  std::vector<torch::Tensor> values_;  // per layer (B, KvH, capacity, D)
  std::int64_t length_ = 0;
  std::int64_t capacity_ = 0;
};

// ------------------------------------------------------- building blocks ----

// transformers' LlamaRMSNorm: normalise in fp32, cast back, scale.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// x (.., in) @ weight (out, in)^T -> (.., out), as torch::linear, but a
// single row goes through a matrix-vector product (faster for decoding).
torch::Tensor project(const torch::Tensor& x, const torch::Tensor& weight);
// x (B, H, T, D) rotated by the tables' positions.
torch::Tensor apply_rotary(const torch::Tensor& x, const RotaryTables& rotary);
// Causal grouped-query attention. query (B, H, T, D); keys/values
// (B, KvH, S, D) with S = past + T; query position i sees keys 0 .. past + i.
// `kind` picks scaled_dot_product_attention or the explicit
// softmax(QK^T / sqrt(D)) V of transformers' eager path.
// With `allowed` (B or 1, 1, T, S) bool, that mask replaces the causal rule
// (document_attention_mask; SDPA takes it as attn_mask on CPU and CUDA).
torch::Tensor causal_attention(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                               std::int64_t past, AttentionKind kind = AttentionKind::kSdpa,
                               const torch::Tensor& allowed = {});
// The kernel scaled_dot_product_attention picks for these inputs (causal, no
// past): "flash", "efficient", "cudnn", "math" or "overrideable".
std::string sdpa_backend(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values);

// ------------------------------------------------- functional unit forwards ----

// What a unit computes: output = fn(input, flat), where `flat` is the unit's
// 1-D parameter buffer (the forwards below, closed over their other inputs).
using UnitFn = std::function<torch::Tensor(const torch::Tensor& input, const torch::Tensor& flat)>;

// Views of `flat` (the unit's 1-D buffer), one per parameter in layout order,
// each with its shape. Elements past the unit's own (padding) are ignored; the
// gradient of `flat` through these views is built in one buffer.
std::vector<torch::Tensor> unit_views(const UnitLayout& layout, const torch::Tensor& flat);

// input_ids (B, T) int64 -> hidden (B, T, C).
torch::Tensor embedding_forward(const UnitLayout& layout, const torch::Tensor& flat, const torch::Tensor& input_ids);
// The head's weight (V, C), a view of the embeddings unit's `flat`:
// lm_head.weight, or the embedding when tied.
torch::Tensor head_weight(const UnitLayout& layout, const torch::Tensor& flat);
// hidden (B, T, C) -> logits (B, T, V) with head_weight.
torch::Tensor head_forward(const UnitLayout& layout, const torch::Tensor& flat, const torch::Tensor& hidden);
// What a decoder layer keeps for backward when it runs with grad:
//   kKeep                  whatever autograd saves (every intermediate it needs);
//   kRecomputeElementwise  only the matmul and attention outputs: the norms,
//                          casts, reshapes and SiLU * up keep their inputs and
//                          run again in backward (selective_recompute.h; the
//                          train.recompute=selective policy).
// Both give the same values and gradients (test_train).
enum class LayerActivations { kKeep, kRecomputeElementwise };

// One decoder layer: hidden (B, T, C) -> (B, T, C). With a cache, this
// layer's keys and values are appended to it (the caller advances it). With
// `allowed` (B, 1, T, S) (token_placement), attention follows that mask; else
// it is causal.
torch::Tensor decoder_layer_forward(const LlamaConfig& config, const UnitLayout& layout, const torch::Tensor& flat,
                                    const torch::Tensor& hidden, const RotaryTables& rotary, KvCache* cache,
                                    const torch::Tensor& allowed = {},
                                    LayerActivations activations = LayerActivations::kKeep);
// The final RMSNorm: hidden (B, T, C) -> (B, T, C).
torch::Tensor final_norm_forward(const LlamaConfig& config, const UnitLayout& layout, const torch::Tensor& flat,
                                 const torch::Tensor& hidden);

// ------------------------------------------------------- the forward order ----

// Runs unit `unit` (an index into unit_layouts) on `input` with fn(input,
// flat): the caller decides where the unit's flat buffer comes from (the
// model's own buffers, or an all-gather of shards) and whether it recomputes.
// `precision` says in which precision the unit reads its weights: the
// runner's compute precision, or the residual stream's (the embedding lookup:
// autocast runs only matmuls in low precision, and a lookup in fp16-rounded
// rows costs SmolLM2's logits 10x the error of the rest of fp16; docs/training.md).
enum class UnitPrecision { kCompute, kResidual };
using UnitRunner =
    std::function<torch::Tensor(std::size_t unit, const torch::Tensor& input, UnitFn fn, UnitPrecision precision)>;

// Where a forward's T tokens sit: the rotary tables of their positions and
// the attention mask, for the three cases a forward can be (the one place
// that builds them):
//   packed documents (no cache): per-document positions, a block-diagonal
//     causal mask (document_attention_mask);
//   left padding (with a cache): each row's own positions; a query sees the
//     real columns up to its own, and always itself (a padding query has no
//     real key, and must not get an all-masked row);
//   otherwise: positions continue the cache (or start at 0), plain causal
//     (`allowed` undefined: the attention kernel's own causal rule).
struct TokenPlacement {
  RotaryTables rotary;    // (T, D) or (B, 1, T, D)
  torch::Tensor allowed;  // (B, 1, T, S) bool on `device`, or undefined
};
// input_ids (B, T) gives the shape and the device.
TokenPlacement token_placement(const torch::Tensor& inv_freq, const torch::Tensor& input_ids,
                               const DocumentLayout& documents, const LeftPadding& padding, const KvCache* cache,
                               torch::ScalarType dtype);

// THE forward order, shared by LlamaModel::forward (and so generation) and the
// sharded trainer (parallel/sharded_llama.h): embeddings -> layers.0 .. L-1 ->
// norm. input_ids (B, T) -> normalised hidden (B, T, C); the caller runs the
// head (head_forward on unit 0). Positions and the mask come from
// token_placement (packed `documents`, left `padding` on a cache, or plain).
// `residual_dtype` is the hidden stream's between units: the weights' own dtype
// for a model run in one precision (as transformers' model.half()), fp32 for
// mixed-precision training, where each unit casts to its weights' precision for
// the matmuls and attention, and RMSNorm, the residual adds and the rotary
// tables stay fp32 (what torch.autocast does). `activations`: what each
// decoder layer keeps for backward (LayerActivations).
torch::Tensor llama_trunk_forward(const LlamaConfig& config, const std::vector<UnitLayout>& units,
                                  const torch::Tensor& inv_freq, const UnitRunner& run, const torch::Tensor& input_ids,
                                  const DocumentLayout& documents, const LeftPadding& padding,
                                  torch::ScalarType residual_dtype, KvCache* cache,
                                  LayerActivations activations = LayerActivations::kKeep);

// ------------------------------------------------------------------ loss ----

// targets[t] = input_ids[t + 1]; the last position has none (-100). With a
// loss mask (B, T) of 0/1, positions whose next token is masked get -100 too;
// with segment ids (B, T), so do positions whose next token starts another
// document or is padding.
torch::Tensor next_token_targets(const torch::Tensor& input_ids, const torch::Tensor& loss_mask = {},
                                 const torch::Tensor& segment_ids = {});

// THE loss: the sum of the fp32 cross-entropy over targets (B, T) that are not
// -100 (logits (B, T, V)). Callers divide by the target count they choose.
torch::Tensor token_loss_sum(const torch::Tensor& logits, const torch::Tensor& targets);

// THE training loss: token_loss_sum of the head's logits (head_forward on
// hidden (B, T, C)) over targets (B, T). chunk_rows > 0 runs the head and the
// loss that many rows at a time and recomputes them in backward, so the
// (B*T, V) fp32 logits never exist at once (chunked_loss.h; equal to the
// unchunked path to rounding); 0 runs them whole (train.loss_chunk_rows).
torch::Tensor head_loss_sum(const UnitLayout& layout, const torch::Tensor& flat, const torch::Tensor& hidden,
                            const torch::Tensor& targets, std::int64_t chunk_rows);

// Mean next-token cross-entropy: token_loss_sum with next_token_targets,
// divided by the number of targets (B * (T - 1) without -100 labels), as
// transformers' loss for labels = input_ids. Label -100 is ignored.
torch::Tensor next_token_loss(const torch::Tensor& logits, const torch::Tensor& input_ids);

// ---------------------------------------------------------------- model ----

class LlamaModel {
 public:
  // Allocates one flat buffer per unit with `options` (dtype, device), zero-
  // filled; nothing is allocated on the meta device (torch::kMeta), which
  // sizes a model without memory. Parameters require grad.
  explicit LlamaModel(LlamaConfig config, torch::TensorOptions options = torch::TensorOptions());

  // Hugging Face's initialisation: normal(0, initializer_range) for every
  // matrix, ones for the norms. Deterministic for a seed.
  void init_weights(std::uint64_t seed);

  const LlamaConfig& config() const { return config_; }
  const std::vector<UnitLayout>& units() const { return units_; }
  // One leaf tensor per unit, in unit order: what an optimizer or a sharding engine holds.
  std::vector<torch::Tensor>& flat_parameters() { return flat_; }
  const std::vector<torch::Tensor>& flat_parameters() const { return flat_; }
  std::int64_t parameter_count() const;
  torch::ScalarType dtype() const { return flat_[0].scalar_type(); }
  torch::Device device() const { return flat_[0].device(); }

  // Hugging Face names with views into the flat buffers, in layout order
  // (no lm_head.weight when tied: it is model.embed_tokens.weight).
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  // A view of one parameter; lm_head.weight resolves to the embedding when tied.
  torch::Tensor parameter(const std::string& name) const;
  // The matching view of the flat gradient, or an undefined tensor before backward.
  torch::Tensor gradient(const std::string& name) const;
  void zero_grad();

  const torch::Tensor& inv_freq() const { return inv_freq_; }  // (D/2,) fp32

  // Which attention kernel the next forward uses (the weights do not change).
  void set_attention(AttentionKind kind) { config_.attention = kind; }

  // input_ids (B, T) int64 -> logits (B, T, V). With a cache, the tokens
  // continue the cached sequence and the cache advances by T.
  torch::Tensor forward(const torch::Tensor& input_ids, KvCache* cache = nullptr) const;
  // Packed rows: positions and attention follow `documents` (no cache).
  torch::Tensor forward(const torch::Tensor& input_ids, const DocumentLayout& documents) const;
  // Left-padded rows continuing `cache` (batched generation). With last_only,
  // only each row's last column reaches the head: logits (B, 1, V) (a long
  // prompt batch's (B, T, V) logits would be the largest tensor of the run).
  torch::Tensor forward(const torch::Tensor& input_ids, const LeftPadding& padding, KvCache& cache,
                        bool last_only = false) const;
  KvCache make_cache(std::int64_t batch, std::int64_t capacity) const;

 private:
  std::pair<std::size_t, int> locate(const std::string& name) const;  // (unit, parameter index); throws
  torch::Tensor forward_with(const torch::Tensor& input_ids, const DocumentLayout& documents,
                             const LeftPadding& padding, KvCache* cache, bool last_only) const;

  LlamaConfig config_;
  std::vector<UnitLayout> units_;
  std::vector<torch::Tensor> flat_;  // per unit, 1-D
  torch::Tensor inv_freq_;
};

}  // namespace metareuse
