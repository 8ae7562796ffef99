#include "metareuse/parallel/sharded_llama.h"

#include "metareuse/core/error.h"
#include "metareuse/model/llama.h"

namespace metareuse {

torch::Tensor next_token_targets(const torch::Tensor& input_ids, const torch::Tensor& loss_mask) {
  torch::Tensor targets = torch::full_like(input_ids, -100);  // (B, T)
  const int64_t T = input_ids.size(1);
  targets.slice(1, 0, T - 1).copy_(input_ids.slice(1, 1));
  if (loss_mask.defined()) {
    torch::Tensor next_masked = loss_mask.slice(1, 1).eq(0);  // (B, T-1)
    targets.slice(1, 0, T - 1).masked_fill_(next_masked, -100);
  }
  return targets;
}

std::vector<UnitDef> llama_unit_defs(const LlamaConfig& config, const std::string& decay_policy) {
  if (decay_policy != "matrices" && decay_policy != "all") {
    MR_THROW("weight-decay policy must be 'matrices' or 'all', got '{}'", decay_policy);
  }
  std::vector<UnitDef> defs;
  for (const auto& layout : unit_layouts(config)) {
    UnitDef def{layout.name, {}};
    for (const auto& parameter : layout.parameters) {
      bool decay = decay_policy == "all" || parameter.shape.size() >= 2;
      def.params.push_back({parameter.name, parameter.shape, decay});
    }
    defs.push_back(std::move(def));
  }
  return defs;
}

ShardedLlama::ShardedLlama(LlamaConfig config, Communicator& comm, torch::Device device,
                           torch::ScalarType compute_dtype, const std::string& decay_policy)
    : config_(std::move(config)),
      layouts_(unit_layouts(config_)),
      model_(llama_unit_defs(config_, decay_policy), comm, device, compute_dtype),
      inv_freq_(rope_inv_freq(config_).to(device)) {
  // The sharded units must lay parameters out exactly as the model's units do.
  for (std::size_t u = 0; u < layouts_.size(); ++u) {
    MR_CHECK(model_.unit(u).numel() == layouts_[u].numel, "unit {} layout mismatch", layouts_[u].name);
  }
}

torch::Tensor ShardedLlama::micro_loss(const torch::Tensor& input_ids, const torch::Tensor& targets,
                                       double normalizer) {
  const int64_t T = input_ids.size(1);
  const std::size_t L = static_cast<std::size_t>(config_.num_hidden_layers);
  // Flat buffers are padded to a multiple of the world size; the model's
  // functional forwards take exactly the unit's elements.
  auto real = [](const UnitLayout& layout, const torch::Tensor& flat) { return flat.narrow(0, 0, layout.numel); };
  RotaryTables rotary = rope_tables(inv_freq_, 0, T, model_.compute_dtype(), input_ids.device());

  const UnitLayout& embeddings = layouts_[0];
  torch::Tensor hidden = model_.run(0, input_ids, [&embeddings, real](const torch::Tensor& ids, const torch::Tensor& flat) {
    return embedding_forward(embeddings, real(embeddings, flat), ids);  // (b, T, C)
  });
  for (std::size_t l = 0; l < L; ++l) {
    const UnitLayout& layer = layouts_[1 + l];
    const LlamaConfig& config = config_;
    hidden = model_.run(1 + l, hidden, [&config, &layer, rotary, real](const torch::Tensor& x, const torch::Tensor& flat) {
      return decoder_layer_forward(config, layer, real(layer, flat), x, rotary, nullptr);  // (b, T, C)
    });
  }
  const UnitLayout& norm = layouts_[L + 1];
  const LlamaConfig& config = config_;
  hidden = model_.run(L + 1, hidden, [&config, &norm, real](const torch::Tensor& x, const torch::Tensor& flat) {
    return final_norm_forward(config, norm, real(norm, flat), x);
  });
  return model_.run(0, hidden, [&embeddings, real, targets, normalizer](const torch::Tensor& x, const torch::Tensor& flat) {
    torch::Tensor logits = head_forward(embeddings, real(embeddings, flat), x).to(torch::kFloat32);  // (b, T, V)
    torch::Tensor summed = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
    return summed / normalizer;
  });
}

double ShardedLlama::forward_backward(const TrainBatch& batch, int64_t micro_batch, double loss_scale) {
  Communicator& comm = model_.comm();
  const int64_t rows = batch.input_ids.size(0);
  const int64_t world = comm.size();
  const double normalizer = static_cast<double>(batch.targets.ne(-100).sum().item<int64_t>());
  MR_CHECK(normalizer > 0, "the global batch has no target tokens");
  MR_CHECK(micro_batch > 0, "micro batch must be positive");

  torch::Tensor mine = torch::arange(comm.rank(), rows, world, torch::kInt64);  // this rank's rows
  const int64_t most_rows = (rows + world - 1) / world;
  const int64_t micro_steps = (most_rows + micro_batch - 1) / micro_batch;
  double local_loss = 0.0;
  for (int64_t m = 0; m < micro_steps; ++m) {
    int64_t begin = m * micro_batch;
    int64_t count = std::max<int64_t>(0, std::min(micro_batch, mine.size(0) - begin));
    torch::Tensor ids, targets;
    if (count > 0) {
      torch::Tensor index = mine.slice(0, begin, begin + count);
      ids = batch.input_ids.index_select(0, index);
      targets = batch.targets.index_select(0, index);
    } else {
      // No rows left here: a zero-weight row keeps this rank in step.
      ids = batch.input_ids.slice(0, 0, 1);
      targets = torch::full_like(ids, -100);
    }
    // The batch lives on the host; the model's units on their device.
    const torch::Device device = inv_freq_.device();
    torch::Tensor loss = micro_loss(ids.to(device), targets.to(device), normalizer);
    if (count > 0) local_loss += loss.item<double>();
    (loss * loss_scale).backward();
    model_.end_micro_step();
  }
  return comm.allreduce_value<double>(local_loss, ReduceOp::kSum);
}

double ShardedLlama::evaluate(const TrainBatch& batch) {
  torch::NoGradGuard no_grad;
  const double normalizer = static_cast<double>(batch.targets.ne(-100).sum().item<int64_t>());
  const torch::Device device = inv_freq_.device();
  return micro_loss(batch.input_ids.to(device), batch.targets.to(device), normalizer).item<double>();
}

}  // namespace metareuse
