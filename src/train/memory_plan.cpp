// The per-rank memory plan of a training configuration (memory_plan.h).
#include "metareuse/train/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"  // format_bytes

namespace metareuse {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

MemoryPlan plan_memory(const LlamaConfig& model, int64_t ranks, int64_t micro_batch, int64_t sequence_length,
                       const std::string& precision, int64_t device_bytes, const std::string& recompute,
                       int64_t loss_chunk_rows, bool overlap) {
  // Bounds first: beyond them the byte counts below would overflow int64.
  if (sequence_length <= 0 || sequence_length > model.max_position_embeddings) {
    throw ConfigError(fmt::format("sequence length {} must be > 0 and at most the model's max_position_embeddings ({})",
                                  sequence_length, model.max_position_embeddings));
  }
  if (ranks <= 0 || ranks > (int64_t{1} << 20)) {
    throw ConfigError(fmt::format("ranks {} must be > 0 and at most {}", ranks, int64_t{1} << 20));
  }
  if (micro_batch <= 0) throw ConfigError(fmt::format("train.micro_batch {} must be > 0", micro_batch));
  if (loss_chunk_rows < 0) throw ConfigError(fmt::format("train.loss_chunk_rows {} must be >= 0", loss_chunk_rows));
  MemoryPlan plan;
  const int64_t compute_bytes = precision == "fp32" ? 4 : 2;
  const int64_t b = micro_batch, T = sequence_length, C = model.hidden_size, F = model.intermediate_size;
  const int64_t H = model.num_attention_heads, L = model.num_hidden_layers, V = model.vocab_size;
  const std::vector<UnitLayout> units = unit_layouts(model);
  plan.parameters = parameter_count(model);
  plan.ranks = ranks;
  int64_t largest_unit = 0;
  for (const auto& layout : units) largest_unit = std::max(largest_unit, layout.numel);
  const int64_t embeddings = units.front().numel;  // the head's weights live in this unit
  plan.sharded_state_bytes = 16 * ceil_div(plan.parameters, ranks);
  // Units are gathered just before they run (with overlap, also the next one:
  // overlap_bytes below). The peak
  // of a unit's backward: its gathered buffer and its full gradient in
  // compute precision, and one fp32 buffer of its size (the gradient's fp32
  // copy for the reduce-scatter, or, in fp32, a parameter view's gradient
  // while the flat one is assembled).
  // The embedding lookup reads its unit in fp32 (the residual stream's
  // precision), so its backward holds three fp32 buffers of the unit's size.
  plan.gathered_units_bytes = std::max(largest_unit * (2 * compute_bytes + 4), embeddings * 12);
  // The head's backward. Unchunked: the gathered embeddings and three fp32
  // (b, T, V) tensors at once (the log-softmax, the loss's gradient, the
  // logits' gradient). Chunked (model/chunked_loss.h): the gathered
  // embeddings, the head weight's gradient (V, C) in compute precision, and
  // one chunk's logits: in compute precision beside their fp32 copy and its
  // log-softmax (in fp32 the copy is the logits themselves).
  plan.loss_chunk_rows = loss_chunk_rows;
  if (loss_chunk_rows == 0) {
    plan.logits_bytes = embeddings * compute_bytes + b * T * V * 12;
  } else {
    const int64_t chunk = std::min(loss_chunk_rows, b * T);
    const int64_t chunk_bytes_per_logit = compute_bytes == 4 ? 8 : compute_bytes + 8;
    plan.logits_bytes = embeddings * compute_bytes + V * C * compute_bytes + chunk * V * chunk_bytes_per_logit;
  }
  // One layer's activations: norms, q/k/v/o, the SwiGLU's three F-wide
  // tensors, and the (b, H, T, T) attention scores and fp32 softmax.
  const int64_t layer = b * T * (6 * C + 3 * F) * compute_bytes + b * H * T * T * (compute_bytes + 4);
  // The hidden stream between units is fp32 in every precision (mixed
  // precision keeps the residual stream wide), and recompute keeps each unit's input.
  const int64_t unit_inputs = (L + 2) * b * T * C * 4;
  plan.activations_checkpointed_bytes = unit_inputs + layer;
  plan.activations_full_bytes = unit_inputs + L * layer;
  // Selective recompute (model/selective_recompute.h) keeps, per layer, what
  // its autograd nodes save: the attention's inputs (query, keys and values,
  // each H heads wide after the grouped heads are repeated) and its output
  // in compute precision with its fp32 log-sum-exp per head and token, the
  // fp32 residual stream between attention and MLP (the second norm's
  // input), and the gate and up projections (SiLU * up's inputs). The layer's
  // own input is a unit input, counted above.
  const int64_t D = model.head_dim;
  const int64_t layer_selective = b * T * (4 * H * D * compute_bytes + 4 * C + 2 * F * compute_bytes) + b * H * T * 4;
  plan.activations_selective_bytes = unit_inputs + L * layer_selective;
  // A decoder layer's backward: its recomputed activations beside its own
  // gathered buffer, gradient and fp32 copy.
  const int64_t layer_unit = L > 0 ? units[1].numel : 0;
  const int64_t layer_backward = layer + layer_unit * (2 * compute_bytes + 4);
  // These backwards run one after another: the unit inputs stay throughout,
  // and the peak is the largest backward.
  const int64_t transient = std::max({plan.gathered_units_bytes, plan.logits_bytes, layer_backward});
  // Overlap (parallel/overlap.h) adds, during each backward, the next
  // call's gather (prefetched) and the previous unit's fp32 gradient (its
  // reduce-scatter in flight until this unit's starts). Per backward: the
  // head's has only the final norm's gather beside it; the norm's, the
  // head's fp32 gradient and the last layer's gather; a layer's, a layer's
  // fp32 gradient and a layer's gather; the lookup's, the first layer's fp32
  // gradient. The first layer's backward holds the embeddings in fp32 (the
  // lookup's gather) instead of a layer's; that is left out: the lookup's own
  // backward, three fp32 copies of them, is the larger on real shapes, and on
  // the probe's small ones (tests/test_memory_probe.sh) the measured peak did
  // not grow with overlap, the layer's planned (b, H, T, T) scores being above
  // what it really holds.
  const bool overlapped = overlap && ranks > 1;
  if (overlapped) {
    const int64_t with_overlap =
        std::max({plan.logits_bytes, embeddings * 4 + layer_unit * compute_bytes,
                  layer_backward + layer_unit * (compute_bytes + 4), plan.gathered_units_bytes + layer_unit * 4});
    plan.overlap_bytes = std::max<int64_t>(0, with_overlap - transient);
  }
  plan.total_bytes = plan.sharded_state_bytes + unit_inputs + transient + plan.overlap_bytes;
  const int64_t kept_overlap_bytes = overlapped ? largest_unit * 4 : 0;  // units kept: the gradient in flight
  plan.kept_units_bytes = plan.parameters * compute_bytes + std::max(largest_unit * (compute_bytes + 4), embeddings * 8);
  plan.total_kept_bytes = plan.sharded_state_bytes + std::max(plan.kept_units_bytes, plan.logits_bytes) +
                          plan.activations_full_bytes + kept_overlap_bytes;
  // The first layer to run backward recomputes its SwiGLU product while every
  // layer's activations are still kept: SiLU(gate) and the product, the
  // product's gradient and those of SiLU, gate and up, five F-wide tensors
  // (measured with bench/memory/memory_probe: the plan is within 3% of the peak
  // at the bench shape).
  const int64_t selective_backward = 5 * b * T * F * compute_bytes;
  plan.total_selective_bytes = plan.sharded_state_bytes + std::max(plan.kept_units_bytes, plan.logits_bytes) +
                               plan.activations_selective_bytes + selective_backward + kept_overlap_bytes;
  plan.device_bytes = device_bytes;
  // 10% headroom for the allocator's fragmentation and the runtime's own memory.
  auto fits = [device_bytes](int64_t bytes) { return device_bytes <= 0 || bytes <= device_bytes * 9 / 10; };
  plan.recompute_choice = recompute;
  if (recompute == "never") {
    plan.recompute = Recompute::kNever;
  } else if (recompute == "selective") {
    plan.recompute = Recompute::kSelective;
  } else if (recompute == "always") {
    plan.recompute = Recompute::kAlways;
  } else if (recompute == "auto") {
    // The least recompute that fits: keeping everything costs no extra
    // forward, selective re-runs only elementwise ops, always re-runs every unit.
    plan.recompute = fits(plan.total_kept_bytes)        ? Recompute::kNever
                     : fits(plan.total_selective_bytes) ? Recompute::kSelective
                                                        : Recompute::kAlways;
  } else {
    throw ConfigError(
        fmt::format("train.recompute must be auto, always, selective or never, got '{}'", recompute));
  }
  plan.fits = fits(planned_total(plan, plan.recompute));
  return plan;
}

int64_t planned_total(const MemoryPlan& plan, Recompute mode) {
  switch (mode) {
    case Recompute::kNever: return plan.total_kept_bytes;
    case Recompute::kSelective: return plan.total_selective_bytes;
    case Recompute::kAlways: return plan.total_bytes;
  }
  return plan.total_bytes;
}

std::string format_plan(const MemoryPlan& plan) {
  std::string out;
  out += fmt::format("memory plan per rank ({} parameters over {} ranks)\n", plan.parameters, plan.ranks);
  out += fmt::format("  sharded state (16 B/param / N)          {:>12}\n", format_bytes(plan.sharded_state_bytes));
  out += fmt::format("  largest unit's backward                 {:>12}\n", format_bytes(plan.gathered_units_bytes));
  const std::string head = plan.loss_chunk_rows > 0
                               ? fmt::format("the head's backward ({}-token chunks)", plan.loss_chunk_rows)
                               : std::string("the head's backward (fp32 logits)");
  out += fmt::format("  {:<40}{:>12}\n", head, format_bytes(plan.logits_bytes));
  if (plan.overlap_bytes > 0) {
    out += fmt::format("  overlap: next unit's gather, a gradient {:>12} (train.overlap)\n",
                       format_bytes(plan.overlap_bytes));
  }
  out += fmt::format("  activations, checkpointed               {:>12}\n",
                     format_bytes(plan.activations_checkpointed_bytes));
  out += fmt::format("  (activations without checkpointing      {:>12})\n", format_bytes(plan.activations_full_bytes));
  out += fmt::format("  total, units recomputed in backward     {:>12} (state, unit inputs, the largest backward)\n",
                     format_bytes(plan.total_bytes));
  out += fmt::format("  total, units and activations kept       {:>12} (all units gathered: {})\n",
                     format_bytes(plan.total_kept_bytes), format_bytes(plan.kept_units_bytes));
  out += fmt::format("  total, selective recompute               {:>12} (activations: {}, matmul and attention outputs)\n",
                     format_bytes(plan.total_selective_bytes), format_bytes(plan.activations_selective_bytes));
  std::string why;
  if (plan.recompute_choice != "auto") {
    why = "as set";
  } else if (plan.device_bytes <= 0) {
    why = "auto: no device memory given, nothing limits";
  } else if (plan.recompute == Recompute::kNever) {
    why = "auto: keeping everything fits";
  } else if (plan.recompute == Recompute::kSelective) {
    why = "auto: keeping everything does not fit, keeping matmul and attention outputs does";
  } else {
    why = "auto: neither keeping everything nor selective recompute fits";
  }
  out += fmt::format("  recompute: {} (train.recompute={}; {})\n", recompute_name(plan.recompute),
                     plan.recompute_choice, why);
  if (plan.device_bytes > 0) {
    out += fmt::format("  device memory                           {:>12} (90% usable)\n", format_bytes(plan.device_bytes));
    out += fmt::format("  verdict: {}\n", plan.fits ? "fits" : "DOES NOT FIT");
  } else {
    out += "  verdict: no device memory given (train.device_memory / --device-memory)\n";
  }
  return out;
}

}  // namespace metareuse
