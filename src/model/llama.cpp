// Llama forward pass, mirroring transformers' modeling_llama.py (eager
// attention) operation by operation, so that fp32 results agree with it to
// rounding. Comments name the transformers function each piece mirrors.
#include "metareuse/model/llama.h"

#include <ATen/CPUGeneratorImpl.h>  // at::detail::createCPUGenerator, seeded init
#include <fmt/format.h>             // messages
#include <torch/torch.h>            // tensor ops, autograd

#include <algorithm>
#include <cmath>
#include <mutex>

#include "metareuse/core/error.h"
#include "metareuse/model/chunked_loss.h"  // the head and its loss in row chunks
#include "metareuse/model/selective_recompute.h"  // recomputed_prologue_projections

namespace metareuse {

// ---------------------------------------------------------------- rotary ----

torch::Tensor rope_inv_freq(const LlamaConfig& config) {
  const std::int64_t D = config.head_dim;
  // _compute_default_rope_parameters: 1 / base ** (arange(0, D, 2) / D), in fp32.
  torch::Tensor exponents = torch::arange(0, D, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(D);
  torch::Tensor inv_freq = 1.0 / torch::pow(config.rope.theta, exponents);  // (D/2,)
  if (config.rope.type == RopeConfig::Type::kDefault) return inv_freq;
  // _compute_linear_scaling_rope_parameters: every frequency divided by the factor.
  if (config.rope.type == RopeConfig::Type::kLinear) return inv_freq / config.rope.factor;

  // _compute_llama3_parameters: long wavelengths are slowed down by `factor`,
  // short ones kept, and the band between interpolated smoothly.
  const RopeConfig& rope = config.rope;
  const double old_context = static_cast<double>(rope.original_max_position_embeddings);
  const double low_freq_wavelength = old_context / rope.low_freq_factor;
  const double high_freq_wavelength = old_context / rope.high_freq_factor;
  torch::Tensor wavelength = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelength > low_freq_wavelength, inv_freq / rope.factor, inv_freq);
  torch::Tensor smooth = (old_context / wavelength - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
  torch::Tensor is_medium = (wavelength < high_freq_wavelength).logical_not().logical_and(
      (wavelength > low_freq_wavelength).logical_not());
  return torch::where(is_medium, smoothed, scaled);
}

RotaryTables rope_tables(const torch::Tensor& inv_freq, std::int64_t start, std::int64_t length,
                         torch::ScalarType dtype, torch::Device device) {
  // LlamaRotaryEmbedding.forward: frequencies in fp32, cos/sin cast to the activations' dtype.
  torch::Tensor positions = torch::arange(start, start + length, torch::kInt64).to(torch::kFloat32);  // (T,)
  torch::Tensor frequencies = torch::outer(positions, inv_freq.to(torch::kFloat32).cpu());             // (T, D/2)
  torch::Tensor angles = torch::cat({frequencies, frequencies}, -1);                                    // (T, D)
  return {angles.cos().to(device, dtype), angles.sin().to(device, dtype)};
}

RotaryTables rope_tables_at(const torch::Tensor& inv_freq, const torch::Tensor& positions, torch::ScalarType dtype,
                            torch::Device device) {
  // As rope_tables, with transformers' position_ids: fp32 positions times fp32 inv_freq.
  torch::Tensor frequencies = positions.to(torch::kCPU, torch::kFloat32).unsqueeze(-1) *
                              inv_freq.to(torch::kFloat32).cpu();  // (B, T, D/2)
  torch::Tensor angles = torch::cat({frequencies, frequencies}, -1).unsqueeze(1);  // (B, 1, T, D)
  return {angles.cos().to(device, dtype), angles.sin().to(device, dtype)};
}

torch::Tensor document_attention_mask(const torch::Tensor& segment_ids) {
  MR_CHECK(segment_ids.dim() == 2, "segment_ids must be (B, T), got {} dimensions", segment_ids.dim());
  const std::int64_t T = segment_ids.size(1);
  torch::Tensor query = segment_ids.unsqueeze(2);  // (B, T, 1)
  torch::Tensor key = segment_ids.unsqueeze(1);    // (B, 1, T)
  torch::Tensor causal = torch::ones({T, T}, segment_ids.options().dtype(torch::kBool)).tril();  // (T, T)
  torch::Tensor same = query.eq(key).logical_and(query.ge(0)).logical_and(causal);             // (B, T, T)
  torch::Tensor self = torch::eye(T, segment_ids.options().dtype(torch::kBool));               // (T, T)
  return same.logical_or(self).unsqueeze(1);  // (B, 1, T, T)
}

// -------------------------------------------------------------- KV cache ----

KvCache::KvCache(const LlamaConfig& config, std::int64_t batch, std::int64_t capacity, torch::TensorOptions options)
    : capacity_(std::max<std::int64_t>(capacity, 1)) {
  for (std::int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    keys_.push_back(torch::empty({batch, config.num_key_value_heads, capacity_, config.head_dim}, options));
    values_.push_back(torch::empty({batch, config.num_key_value_heads, capacity_, config.head_dim}, options));
  }
}

void KvCache::grow(std::int64_t needed) {
  std::int64_t capacity = capacity_;
  while (capacity < needed) capacity *= 2;
  for (std::size_t layer = 0; layer < keys_.size(); ++layer) {
    for (auto* buffers : {&keys_, &values_}) {
      torch::Tensor& old = (*buffers)[layer];
      torch::Tensor wider = torch::empty({old.size(0), old.size(1), capacity, old.size(3)}, old.options());
      wider.narrow(2, 0, capacity_).copy_(old);
      old = wider;
    }
  }
  capacity_ = capacity;
}

std::pair<torch::Tensor, torch::Tensor> KvCache::append(std::int64_t layer, const torch::Tensor& keys,
                                                        const torch::Tensor& values) {
  const std::int64_t T = keys.size(2);
  MR_CHECK(layer >= 0 && layer < static_cast<std::int64_t>(keys_.size()) && keys.size(0) == keys_[layer].size(0),
           "KV cache for batch {} and {} layers was given layer {} with batch {}", keys_.empty() ? 0 : keys_[0].size(0),
           keys_.size(), layer, keys.size(0));
  if (length_ + T > capacity_) grow(length_ + T);
  keys_[layer].narrow(2, length_, T).copy_(keys);
  values_[layer].narrow(2, length_, T).copy_(values);
  return {keys_[layer].narrow(2, 0, length_ + T), values_[layer].narrow(2, 0, length_ + T)};
}

void KvCache::keep_rows(const torch::Tensor& rows) {
  for (auto* buffers : {&keys_, &values_}) {
    for (auto& buffer : *buffers) buffer = buffer.index_select(0, rows.to(buffer.device()));
  }
}

// ------------------------------------------------------- building blocks ----

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  // LlamaRMSNorm.forward
  torch::Tensor wide = x.to(torch::kFloat32);
  torch::Tensor variance = wide.pow(2).mean(-1, /*keepdim=*/true);  // (.., 1)
  wide = wide * torch::rsqrt(variance + eps);
  return weight * wide.to(x.scalar_type());
}

namespace {

// rotate_half: (x1, x2) -> (-x2, x1) along the last dimension.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const std::int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// repeat_kv: (B, KvH, S, D) -> (B, KvH * groups, S, D), each KV head serving `groups` query heads.
torch::Tensor repeat_kv(const torch::Tensor& x, std::int64_t groups) {
  if (groups == 1) return x;
  const auto B = x.size(0), KvH = x.size(1), S = x.size(2), D = x.size(3);
  return x.unsqueeze(2).expand({B, KvH, groups, S, D}).reshape({B, KvH * groups, S, D});
}

// allowed[i][j]: query i (absolute position past + i) may attend key j.
torch::Tensor causal_allowed(std::int64_t T, std::int64_t S, std::int64_t past, torch::Device device) {
  torch::Tensor query_positions = torch::arange(past, past + T, torch::TensorOptions().dtype(torch::kInt64).device(device));
  torch::Tensor key_positions = torch::arange(0, S, torch::TensorOptions().dtype(torch::kInt64).device(device));
  return key_positions.unsqueeze(0) <= query_positions.unsqueeze(1);  // (T, S) bool
}

}  // namespace

torch::Tensor project(const torch::Tensor& x, const torch::Tensor& weight) {
  if (x.numel() == x.size(-1)) {
    // One row, as when decoding one token with the cache: a matrix-vector
    // product. linear() goes through sgemm, which in OpenBLAS 0.3.21 packs the
    // whole weight for one row: measured here, (8192 x 256) weight, one row,
    // linear 1.73 ms vs mv 0.24 ms.
    std::vector<std::int64_t> shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return torch::mv(weight, x.to(weight.scalar_type()).reshape({-1})).view(shape);
  }
  // Mixed precision: an fp32 residual stream meets fp16/bf16 weights here, and
  // the product runs in the weights' precision, as under autocast.
  return torch::linear(x.to(weight.scalar_type()), weight);
}

torch::Tensor apply_rotary(const torch::Tensor& x, const RotaryTables& rotary) {
  // apply_rotary_pos_emb; the (T, D) tables broadcast over (B, H, T, D).
  return x * rotary.cos + rotate_half(x) * rotary.sin;
}

namespace {

// On CUDA, SDPA tries flash, then memory-efficient, then math, with cuDNN's
// fused attention among them in some releases. metareuse wants the same
// kernels on every cluster: flash where it runs (sm_80+, fp16/bf16), the
// memory-efficient kernel on sm_60 (P100) and for fp32, so cuDNN's is off.
void choose_cuda_attention_kernels() {
  static std::once_flag once;
  std::call_once(once, [] { at::globalContext().setSDPUseCuDNN(false); });
}

}  // namespace

std::string sdpa_backend(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values) {
  if (query.is_cuda()) choose_cuda_attention_kernels();
  torch::Tensor k = repeat_kv(keys, query.size(1) / keys.size(1));
  torch::Tensor v = repeat_kv(values, query.size(1) / values.size(1));
  // sdp::SDPBackend (ATen/native/transformers/sdp_utils_cpp.h).
  switch (at::_fused_sdp_choice(query, k, v, {}, 0.0, /*is_causal=*/true)) {
    case 0: return "math";
    case 1: return "flash";
    case 2: return "efficient";
    case 3: return "cudnn";
    case 4: return "overrideable";
    default: return "none";
  }
}

torch::Tensor causal_attention(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                               std::int64_t past, AttentionKind kind, const torch::Tensor& allowed) {
  const std::int64_t B = query.size(0), H = query.size(1), T = query.size(2), D = query.size(3), S = keys.size(2);
  const std::int64_t KvH = keys.size(1), groups = H / KvH;
  if (allowed.defined()) {
    MR_CHECK(allowed.dim() == 4 && allowed.size(2) == T && allowed.size(3) == S,
             "attention mask must be (B, 1, {}, {}), got [{}]", T, S, fmt::join(allowed.sizes(), ", "));
  }
  if (kind == AttentionKind::kSdpa && query.is_cuda()) choose_cuda_attention_kernels();
  if (kind == AttentionKind::kSdpa && T == 1 && groups > 1) {
    // Decoding one token with grouped-query attention: the `groups` query
    // heads of a KV head (heads kv * groups + g, repeat_kv's order) become
    // that head's `groups` queries, so the cache is read in place instead of
    // copied groups times per layer and step. A single query sees every key;
    // a padding mask (B, 1, 1, S) broadcasts over the groups.
    torch::Tensor grouped = query.reshape({B, KvH, groups, D});  // (B, KvH, G, D)
    torch::Tensor attended =
        allowed.defined() ? at::scaled_dot_product_attention(grouped, keys, values, allowed, 0.0, /*is_causal=*/false)
                          : at::scaled_dot_product_attention(grouped, keys, values, {}, 0.0, /*is_causal=*/false);
    // attended: (B, KvH, G, D)
    return attended.reshape({B, H, 1, D});
  }
  torch::Tensor k = repeat_kv(keys, groups);    // (B, H, S, D)
  torch::Tensor v = repeat_kv(values, groups);  // (B, H, S, D)
  if (kind == AttentionKind::kSdpa) {
    // A document mask: SDPA with attn_mask (CPU's fused kernel, CUDA's
    // memory-efficient one; flash takes no mask). libtorch 2.11 exposes no
    // public variable-length kernel, so packed rows go through the mask.
    if (allowed.defined()) return at::scaled_dot_product_attention(query, k, v, allowed, 0.0, /*is_causal=*/false);
    // SDPA's is_causal aligns the mask top-left, which is right only without a
    // past; a single query sees everything; otherwise pass the mask.
    if (past == 0) return at::scaled_dot_product_attention(query, k, v, {}, 0.0, /*is_causal=*/true);
    if (T == 1) return at::scaled_dot_product_attention(query, k, v, {}, 0.0, /*is_causal=*/false);
    return at::scaled_dot_product_attention(query, k, v, causal_allowed(T, S, past, query.device()), 0.0, false);
  }
  // eager_attention_forward: scores scaled after the matmul, softmax in fp32.
  const double scaling = 1.0 / std::sqrt(static_cast<double>(D));
  torch::Tensor scores = torch::matmul(query, k.transpose(2, 3)) * scaling;  // (B, H, T, S)
  if (allowed.defined()) {
    scores = scores.masked_fill(allowed.logical_not(), -INFINITY);
  } else if (T > 1) {
    scores = scores.masked_fill(causal_allowed(T, S, past, query.device()).logical_not(), -INFINITY);
  }
  torch::Tensor probabilities = torch::softmax(scores, -1, torch::kFloat32).to(query.scalar_type());
  return torch::matmul(probabilities, v);  // (B, H, T, D)
}

// --------------------------------------------- functional unit forwards ----

std::vector<torch::Tensor> unit_views(const UnitLayout& layout, const torch::Tensor& flat) {
  MR_CHECK(flat.dim() == 1 && flat.numel() >= layout.numel,
           "unit '{}' expects a flat buffer of at least {} elements, got shape [{}]", layout.name, layout.numel,
           fmt::join(flat.sizes(), ", "));
  // One split rather than a narrow per parameter: autograd's backward of a
  // split is one cat of the pieces' gradients into a new flat buffer, where
  // each narrow's backward zero-fills a buffer of the whole flat size and the
  // engine sums them (9 per decoder layer). Per-parameter leaves whose .grad
  // are views of one preallocated buffer would skip the cat too, but the
  // unit's forwards would then take parameter lists instead of `flat`. A tail
  // past the unit's elements (the sharding's padding) is one more piece, so
  // callers need not trim `flat` (a trim is a narrow too).
  std::vector<std::int64_t> sizes;
  sizes.reserve(layout.parameters.size() + 1);
  for (const auto& parameter : layout.parameters) sizes.push_back(parameter.numel);
  if (flat.numel() > layout.numel) sizes.push_back(flat.numel() - layout.numel);
  std::vector<torch::Tensor> pieces = flat.split_with_sizes(sizes);
  std::vector<torch::Tensor> views;
  views.reserve(layout.parameters.size());
  for (std::size_t i = 0; i < layout.parameters.size(); ++i) views.push_back(pieces[i].view(layout.parameters[i].shape));
  return views;
}

torch::Tensor embedding_forward(const UnitLayout& layout, const torch::Tensor& flat, const torch::Tensor& input_ids) {
  MR_CHECK(layout.kind == UnitKind::kEmbeddings, "unit '{}' is not the embeddings unit", layout.name);
  torch::Tensor table = unit_views(layout, flat)[0];  // (V, C)
  return torch::embedding(table, input_ids);          // (B, T, C)
}

torch::Tensor head_weight(const UnitLayout& layout, const torch::Tensor& flat) {
  MR_CHECK(layout.kind == UnitKind::kEmbeddings, "unit '{}' is not the embeddings unit", layout.name);
  auto views = unit_views(layout, flat);
  // Untied: lm_head.weight is the unit's second tensor; tied: the embedding itself,
  // so the gradient of the flat buffer sums both uses.
  return views.size() > 1 ? views[1] : views[0];  // (V, C)
}

torch::Tensor head_forward(const UnitLayout& layout, const torch::Tensor& flat, const torch::Tensor& hidden) {
  return project(hidden, head_weight(layout, flat));  // (B, T, V)
}

torch::Tensor decoder_layer_forward(const LlamaConfig& config, const UnitLayout& layout, const torch::Tensor& flat,
                                    const torch::Tensor& hidden, const RotaryTables& rotary, KvCache* cache,
                                    const torch::Tensor& allowed, LayerActivations activations) {
  MR_CHECK(layout.kind == UnitKind::kDecoderLayer, "unit '{}' is not a decoder layer", layout.name);
  auto views = unit_views(layout, flat);  // layout order (config.cpp)
  const torch::Tensor& q_proj = views[0];
  const torch::Tensor& k_proj = views[1];
  const torch::Tensor& v_proj = views[2];
  const torch::Tensor& o_proj = views[3];
  const torch::Tensor& gate_proj = views[4];
  const torch::Tensor& up_proj = views[5];
  const torch::Tensor& down_proj = views[6];
  const torch::Tensor& input_layernorm = views[7];
  const torch::Tensor& post_attention_layernorm = views[8];

  const std::int64_t B = hidden.size(0), T = hidden.size(1);
  const std::int64_t H = config.num_attention_heads, KvH = config.num_key_value_heads, D = config.head_dim;
  const torch::ScalarType compute = flat.scalar_type();

  // Selective recompute (selective_recompute.h): the same ops, grouped so that
  // each elementwise prologue keeps only its inputs and runs again in backward.
  const bool selective = activations == LayerActivations::kRecomputeElementwise && torch::GradMode::is_enabled();
  const double eps = config.rms_norm_eps;
  // The norm's output is cast to the weights' precision once for the projections that read it.
  auto norm_prologue = [eps, compute](const std::vector<torch::Tensor>& in) {
    return rms_norm(in[0], in[1], eps).to(compute);  // (B, T, C)
  };

  // LlamaAttention.forward
  torch::Tensor query, keys, values;
  if (selective) {
    auto qkv = recomputed_prologue_projections(norm_prologue, {hidden, input_layernorm}, {q_proj, k_proj, v_proj});
    query = qkv[0], keys = qkv[1], values = qkv[2];
  } else {
    torch::Tensor normed = norm_prologue({hidden, input_layernorm});  // (B, T, C)
    query = project(normed, q_proj), keys = project(normed, k_proj), values = project(normed, v_proj);
  }
  query = query.view({B, T, H, D}).transpose(1, 2);      // (B, H, T, D)
  keys = keys.view({B, T, KvH, D}).transpose(1, 2);      // (B, KvH, T, D)
  values = values.view({B, T, KvH, D}).transpose(1, 2);  // (B, KvH, T, D)
  // With an fp32 residual stream the rotary tables are fp32 (autocast's
  // rotation runs in fp32); attention and the cache run in the weights' precision.
  query = apply_rotary(query, rotary).to(compute);
  keys = apply_rotary(keys, rotary).to(compute);
  std::int64_t past = 0;
  if (cache != nullptr) {
    past = cache->length();
    std::tie(keys, values) = cache->append(layout.layer, keys, values);  // (B, KvH, S, D)
  }
  torch::Tensor attended = causal_attention(query, keys, values, past, config.attention, allowed);  // (B, H, T, D)
  auto heads_prologue = [B, T, H, D](const std::vector<torch::Tensor>& in) {
    return in[0].transpose(1, 2).reshape({B, T, H * D});  // (B, T, H*D)
  };
  torch::Tensor attention_out = selective ? recomputed_prologue_projections(heads_prologue, {attended}, {o_proj})[0]
                                          : project(heads_prologue({attended}), o_proj);  // (B, T, C)
  // The residual adds keep the stream's dtype (fp32 under mixed precision).
  torch::Tensor residual = hidden + attention_out.to(hidden.scalar_type());  // (B, T, C)

  // LlamaMLP.forward: down(silu(gate(x)) * up(x))
  torch::Tensor gate, up;
  if (selective) {
    auto gate_up = recomputed_prologue_projections(norm_prologue, {residual, post_attention_layernorm},
                                                   {gate_proj, up_proj});
    gate = gate_up[0], up = gate_up[1];
  } else {
    torch::Tensor normed = norm_prologue({residual, post_attention_layernorm});
    gate = project(normed, gate_proj), up = project(normed, up_proj);  // (B, T, F)
  }
  auto swiglu_prologue = [](const std::vector<torch::Tensor>& in) { return torch::silu(in[0]) * in[1]; };
  torch::Tensor down = selective ? recomputed_prologue_projections(swiglu_prologue, {gate, up}, {down_proj})[0]
                                 : project(swiglu_prologue({gate, up}), down_proj);  // (B, T, C)
  return residual + down.to(residual.scalar_type());  // (B, T, C)
}

torch::Tensor final_norm_forward(const LlamaConfig& config, const UnitLayout& layout, const torch::Tensor& flat,
                                 const torch::Tensor& hidden) {
  MR_CHECK(layout.kind == UnitKind::kFinalNorm, "unit '{}' is not the final norm", layout.name);
  return rms_norm(hidden, unit_views(layout, flat)[0], config.rms_norm_eps);
}

// ------------------------------------------------------- the forward order ----

TokenPlacement token_placement(const torch::Tensor& inv_freq, const torch::Tensor& input_ids,
                               const DocumentLayout& documents, const LeftPadding& padding, const KvCache* cache,
                               torch::ScalarType dtype) {
  const std::int64_t B = input_ids.size(0), T = input_ids.size(1);
  const torch::Device device = input_ids.device();
  MR_CHECK(!(documents.defined() && cache != nullptr), "packed documents cannot continue a KV cache");
  MR_CHECK(!(documents.defined() && padding.defined()), "packed documents are not left-padded rows");
  MR_CHECK(!padding.defined() || cache != nullptr, "left-padded rows continue a KV cache; none was given");
  TokenPlacement out;
  if (documents.defined()) {
    MR_CHECK(documents.segment_ids.sizes() == input_ids.sizes() && documents.positions.sizes() == input_ids.sizes(),
             "segment_ids [{}] and positions [{}] must have the shape of input_ids [{}]",
             fmt::join(documents.segment_ids.sizes(), ", "), fmt::join(documents.positions.sizes(), ", "),
             fmt::join(input_ids.sizes(), ", "));
    out.rotary = rope_tables_at(inv_freq, documents.positions, dtype, device);
    out.allowed = document_attention_mask(documents.segment_ids.to(device));
    return out;
  }
  const std::int64_t past = cache != nullptr ? cache->length() : 0;
  if (padding.defined()) {
    const std::int64_t S = past + T;
    MR_CHECK(padding.positions.sizes() == input_ids.sizes() && padding.key_valid.dim() == 2 &&
                 padding.key_valid.size(0) == B && padding.key_valid.size(1) == S,
             "left padding: positions [{}] must be ({}, {}) and key_valid [{}] ({}, {}) with {} cached columns",
             fmt::join(padding.positions.sizes(), ", "), B, T, fmt::join(padding.key_valid.sizes(), ", "), B, S,
             past);
    out.rotary = rope_tables_at(inv_freq, padding.positions, dtype, device);
    torch::Tensor columns = torch::arange(S, torch::kInt64);
    torch::Tensor query_columns = columns.narrow(0, past, T).unsqueeze(1);  // (T, 1)
    torch::Tensor causal = columns.unsqueeze(0) <= query_columns;           // (T, S)
    torch::Tensor real = padding.key_valid.to(torch::kCPU, torch::kBool).unsqueeze(1);  // (B, 1, S)
    torch::Tensor allowed = causal.unsqueeze(0).logical_and(real).logical_or(
        (columns.unsqueeze(0) == query_columns).unsqueeze(0));  // (B, T, S)
    out.allowed = allowed.unsqueeze(1).to(device);                // (B, 1, T, S)
    return out;
  }
  out.rotary = rope_tables(inv_freq, past, T, dtype, device);
  return out;
}

torch::Tensor llama_trunk_forward(const LlamaConfig& config, const std::vector<UnitLayout>& units,
                                  const torch::Tensor& inv_freq, const UnitRunner& run, const torch::Tensor& input_ids,
                                  const DocumentLayout& documents, const LeftPadding& padding,
                                  torch::ScalarType residual_dtype, KvCache* cache, LayerActivations activations) {
  const TokenPlacement placement = token_placement(inv_freq, input_ids, documents, padding, cache, residual_dtype);
  const RotaryTables& rotary = placement.rotary;
  const torch::Tensor& allowed = placement.allowed;
  const UnitLayout& embeddings = units.front();
  torch::Tensor hidden = run(
      0, input_ids,
      [&embeddings, residual_dtype](const torch::Tensor& ids, const torch::Tensor& flat) {
        return embedding_forward(embeddings, flat, ids).to(residual_dtype);  // (B, T, C)
      },
      UnitPrecision::kResidual);
  for (std::int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    const std::size_t u = static_cast<std::size_t>(layer) + 1;
    const UnitLayout& unit = units[u];
    // Captured by value: a recomputing call runs this again in backward.
    hidden = run(
        u, hidden,
        [&config, &unit, rotary, cache, allowed, activations](const torch::Tensor& x, const torch::Tensor& flat) {
          return decoder_layer_forward(config, unit, flat, x, rotary, cache, allowed, activations);  // (B, T, C)
        },
        UnitPrecision::kCompute);
  }
  const UnitLayout& norm = units.back();
  return run(
      units.size() - 1, hidden,
      [&config, &norm](const torch::Tensor& x, const torch::Tensor& flat) {
        return final_norm_forward(config, norm, flat, x);  // (B, T, C)
      },
      UnitPrecision::kCompute);
}

// ------------------------------------------------------------------ loss ----

torch::Tensor next_token_targets(const torch::Tensor& input_ids, const torch::Tensor& loss_mask,
                                 const torch::Tensor& segment_ids) {
  torch::Tensor targets = torch::full_like(input_ids, -100);  // (B, T)
  const std::int64_t T = input_ids.size(1);
  targets.slice(1, 0, T - 1).copy_(input_ids.slice(1, 1));
  if (loss_mask.defined()) {
    torch::Tensor next_masked = loss_mask.slice(1, 1).eq(0);  // (B, T-1)
    targets.slice(1, 0, T - 1).masked_fill_(next_masked, -100);
  }
  if (segment_ids.defined()) {
    // The next token belongs to another document, or is padding.
    torch::Tensor next = segment_ids.slice(1, 1);  // (B, T-1)
    torch::Tensor crosses = next.ne(segment_ids.slice(1, 0, T - 1)).logical_or(next.lt(0));
    targets.slice(1, 0, T - 1).masked_fill_(crosses, -100);
  }
  return targets;
}

torch::Tensor token_loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) {
  const std::int64_t V = logits.size(-1);
  return torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat32).reshape({-1, V}), targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
}

torch::Tensor head_loss_sum(const UnitLayout& layout, const torch::Tensor& flat, const torch::Tensor& hidden,
                            const torch::Tensor& targets, std::int64_t chunk_rows) {
  MR_CHECK(chunk_rows >= 0, "the loss's chunk rows must be >= 0 (0: unchunked), got {}", chunk_rows);
  if (chunk_rows == 0) return token_loss_sum(head_forward(layout, flat, hidden), targets);
  return chunked_token_loss_sum(hidden, head_weight(layout, flat), targets, chunk_rows);
}

torch::Tensor next_token_loss(const torch::Tensor& logits, const torch::Tensor& input_ids) {
  MR_CHECK(logits.size(1) >= 2, "next-token loss needs at least 2 tokens per sequence, got {}", logits.size(1));
  torch::Tensor targets = next_token_targets(input_ids);                   // (B, T)
  return token_loss_sum(logits, targets) / targets.ne(-100).sum().to(torch::kFloat32);
}

// ------------------------------------------------------------------ model ----

LlamaModel::LlamaModel(LlamaConfig config, torch::TensorOptions options)
    : config_(std::move(config)), units_(unit_layouts(config_)) {
  config_.validate("model config");
  if (!options.has_dtype()) options = options.dtype(torch::kFloat32);
  for (const auto& unit : units_) {
    // Meta tensors carry shapes only: sizing the 3B model allocates nothing.
    torch::Tensor flat = options.device().is_meta() ? torch::empty({unit.numel}, options)
                                                    : torch::zeros({unit.numel}, options);
    flat.set_requires_grad(true);
    flat_.push_back(flat);
  }
  inv_freq_ = rope_inv_freq(config_);
}

void LlamaModel::init_weights(std::uint64_t seed) {
  if (device().is_meta()) return;
  auto generator = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  for (std::size_t u = 0; u < units_.size(); ++u) {
    torch::Tensor values = torch::empty({units_[u].numel}, torch::kFloat32);
    for (const auto& parameter : units_[u].parameters) {
      torch::Tensor view = values.narrow(0, parameter.offset, parameter.numel);
      if (parameter.shape.size() == 1) {
        view.fill_(1.0);
      } else {
        view.normal_(0.0, config_.initializer_range, generator);
      }
    }
    flat_[u].copy_(values);
  }
}

std::int64_t LlamaModel::parameter_count() const {
  std::int64_t total = 0;
  for (const auto& flat : flat_) total += flat.numel();
  return total;
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModel::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (std::size_t u = 0; u < units_.size(); ++u) {
    auto views = unit_views(units_[u], flat_[u]);
    for (std::size_t i = 0; i < views.size(); ++i) out.emplace_back(units_[u].parameters[i].name, views[i]);
  }
  return out;
}

std::pair<std::size_t, int> LlamaModel::locate(const std::string& name) const {
  const std::string resolved = (name == "lm_head.weight" && config_.tie_word_embeddings) ? "model.embed_tokens.weight" : name;
  for (std::size_t u = 0; u < units_.size(); ++u) {
    int index = units_[u].find(resolved);
    if (index >= 0) return {u, index};
  }
  throw Error(fmt::format("the model has no parameter '{}'", name));
}

torch::Tensor LlamaModel::parameter(const std::string& name) const {
  auto [unit, index] = locate(name);
  const UnitParameter& info = units_[unit].parameters[index];
  return flat_[unit].narrow(0, info.offset, info.numel).view(info.shape);
}

torch::Tensor LlamaModel::gradient(const std::string& name) const {
  auto [unit, index] = locate(name);
  const torch::Tensor& grad = flat_[unit].grad();
  if (!grad.defined()) return {};
  const UnitParameter& info = units_[unit].parameters[index];
  return grad.narrow(0, info.offset, info.numel).view(info.shape);
}

void LlamaModel::zero_grad() {
  for (auto& flat : flat_) flat.mutable_grad() = torch::Tensor();
}

KvCache LlamaModel::make_cache(std::int64_t batch, std::int64_t capacity) const {
  return KvCache(config_, batch, capacity, flat_[0].options().requires_grad(false));
}

torch::Tensor LlamaModel::forward(const torch::Tensor& input_ids, KvCache* cache) const {
  return forward_with(input_ids, {}, {}, cache, false);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& input_ids, const DocumentLayout& documents) const {
  return forward_with(input_ids, documents, {}, nullptr, false);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& input_ids, const LeftPadding& padding, KvCache& cache,
                                  bool last_only) const {
  return forward_with(input_ids, {}, padding, &cache, last_only);
}

torch::Tensor LlamaModel::forward_with(const torch::Tensor& input_ids, const DocumentLayout& documents,
                                       const LeftPadding& padding, KvCache* cache, bool last_only) const {
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64) {
    throw InputError(fmt::format("input_ids must be int64 (B, T); got {} [{}]", c10::toString(input_ids.scalar_type()),
                                 fmt::join(input_ids.sizes(), ", ")));
  }
  if (input_ids.numel() > 0) {
    // Ids are read on the host (where callers keep them): this runs at every
    // decoding step, and a min()/max() on a device would wait for it twice.
    const torch::Tensor host = input_ids.to(torch::kCPU).contiguous();
    const std::int64_t* id = host.data_ptr<std::int64_t>();
    const auto [low_at, high_at] = std::minmax_element(id, id + host.numel());
    const std::int64_t low = *low_at, high = *high_at;
    if (low < 0 || high >= config_.vocab_size) {
      throw InputError(fmt::format("input_ids hold token {} outside the vocabulary [0, {})", low < 0 ? low : high,
                                   config_.vocab_size));
    }
  }
  const std::int64_t T = input_ids.size(1);
  const torch::Tensor ids = input_ids.to(device());
  // Unit u runs on its own leaf buffer, in one precision throughout (the
  // weights' own), so `precision` changes nothing here.
  UnitRunner run = [this](std::size_t u, const torch::Tensor& input, UnitFn fn, UnitPrecision) {
    return fn(input, flat_[u]);
  };
  torch::Tensor hidden =
      llama_trunk_forward(config_, units_, inv_freq_, run, ids, documents, padding, dtype(), cache);  // (B, T, C)
  if (last_only) hidden = hidden.narrow(1, T - 1, 1);                                             // (B, 1, C)
  torch::Tensor logits = head_forward(units_.front(), flat_.front(), hidden);                     // (B, T|1, V)
  if (cache != nullptr) cache->advance(T);
  return logits;
}

}  // namespace metareuse
