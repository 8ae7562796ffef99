#include "metareuse/parallel/sharded_llama.h"

#include "metareuse/core/error.h"
#include "metareuse/model/llama.h"

namespace metareuse {

ShardedLlama::ShardedLlama(LlamaConfig config, Communicator& comm, torch::Device device,
                           torch::ScalarType compute_dtype)
    : config_(std::move(config)),
      layouts_(unit_layouts(config_)),
      model_(layouts_, comm, device, compute_dtype),
      inv_freq_(rope_inv_freq(config_).to(device)) {}

namespace {

// Rows of a micro-batch cut to its longest row (the columns after it are
// padding everywhere), with the document layout kept only where a row holds
// several documents; a single right-padded document per row needs only the
// causal mask, which gives its tokens the same result.
struct MicroBatch {
  torch::Tensor input_ids, targets;  // (b, T')
  DocumentLayout documents;          // (b, T') each, or undefined
};

MicroBatch cut_micro_batch(const torch::Tensor& input_ids, const torch::Tensor& targets, const DocumentLayout& documents) {
  if (!documents.defined()) return {input_ids, targets, {}};
  const torch::Tensor& segments = documents.segment_ids;  // (b, T)
  const int64_t T = segments.size(1);
  torch::Tensor real = segments.ge(0);                     // (b, T)
  torch::Tensor columns = torch::arange(1, T + 1, torch::kInt64).unsqueeze(0).expand_as(segments);
  const int64_t longest = std::max<int64_t>(2, (columns * real).max().item<int64_t>());
  auto cut = [longest](const torch::Tensor& x) { return x.narrow(1, 0, longest); };
  MicroBatch out{cut(input_ids), cut(targets), {}};
  if (segments.max().item<int64_t>() > 0) out.documents = {cut(documents.positions), cut(segments)};
  return out;
}

}  // namespace

torch::Tensor ShardedLlama::micro_loss(const torch::Tensor& input_ids, const torch::Tensor& targets,
                                       const DocumentLayout& documents, double normalizer) {
  // Flat buffers are padded to a multiple of the world size; the model's
  // functional forwards take exactly the unit's elements.
  UnitRunner run = [this](std::size_t u, const torch::Tensor& input, UnitFn fn) {
    const int64_t numel = layouts_[u].numel;
    return model_.run(u, input, [numel, fn](const torch::Tensor& x, const torch::Tensor& flat) {
      return fn(x, flat.narrow(0, 0, numel));
    });
  };
  torch::Tensor hidden = llama_trunk_forward(config_, layouts_, inv_freq_, run, input_ids, documents,
                                             model_.compute_dtype(), nullptr);  // (b, T, C)
  const UnitLayout& embeddings = layouts_[0];
  return run(0, hidden, [&embeddings, targets, normalizer](const torch::Tensor& x, const torch::Tensor& flat) {
    return token_loss_sum(head_forward(embeddings, flat, x), targets) / normalizer;
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
    torch::Tensor index = count > 0 ? mine.slice(0, begin, begin + count) : torch::zeros({1}, torch::kInt64);
    auto rows_of = [&index](const torch::Tensor& x) { return x.defined() ? x.index_select(0, index) : x; };
    torch::Tensor targets = rows_of(batch.targets);
    // No rows left here: a zero-weight row keeps this rank in step.
    if (count == 0) targets.fill_(-100);
    MicroBatch micro = cut_micro_batch(rows_of(batch.input_ids), targets,
                                       {rows_of(batch.documents.positions), rows_of(batch.documents.segment_ids)});
    // The batch lives on the host; the model's units on their device.
    const torch::Device device = inv_freq_.device();
    torch::Tensor loss = micro_loss(micro.input_ids.to(device), micro.targets.to(device), micro.documents, normalizer);
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
  MicroBatch micro = cut_micro_batch(batch.input_ids, batch.targets, batch.documents);
  return micro_loss(micro.input_ids.to(device), micro.targets.to(device), micro.documents, normalizer).item<double>();
}

}  // namespace metareuse
