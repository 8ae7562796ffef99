#include "metareuse/parallel/sharded_llama.h"

#include "metareuse/core/error.h"
#include "metareuse/distributed/runtime.h"  // CollectiveScope: the step's one host sync is watched
#include "metareuse/model/llama.h"

namespace metareuse {

ShardedLlama::ShardedLlama(LlamaConfig config, Communicator& comm, torch::Device device,
                           torch::ScalarType compute_dtype)
    : config_(std::move(config)),
      layouts_(unit_layouts(config_)),
      model_(layouts_, comm, device, compute_dtype),
      device_(device),
      inv_freq_(rope_inv_freq(config_)) {}

void ShardedLlama::set_loss_chunk_rows(int64_t rows) {
  MR_CHECK(rows >= 0, "the loss's chunk rows must be >= 0 (0: unchunked), got {}", rows);
  loss_chunk_rows_ = rows;
}

void ShardedLlama::set_recompute(Recompute mode) {
  recompute_ = mode;
  model_.set_recompute(mode == Recompute::kAlways);
}

namespace {

// Rows of a micro-batch cut to its longest row (the columns after it are
// padding everywhere), with the document layout kept only where a row holds
// several documents; a single right-padded document per row needs only the
// causal mask, which gives its tokens the same result.
struct MicroBatch {
  torch::Tensor input_ids, targets;  // (b, T')
  DocumentLayout documents;          // (b, T') each, or undefined
};

// The batch lives on the host, and its bookkeeping is read there directly:
// no tensor op ends in a scalar read (a device sync where tensors are on a GPU,
// and a count the sync-budget test holds).
MicroBatch cut_micro_batch(const torch::Tensor& input_ids, const torch::Tensor& targets, const DocumentLayout& documents) {
  if (!documents.defined()) return {input_ids, targets, {}};
  const torch::Tensor segments = documents.segment_ids.to(torch::kCPU, torch::kInt64).contiguous();  // (b, T)
  const int64_t T = segments.size(1);
  const int64_t* segment = segments.data_ptr<int64_t>();
  int64_t longest = 2;
  int64_t most_documents = -1;  // the largest segment id: > 0 means several documents in a row
  for (int64_t i = 0; i < segments.numel(); ++i) {
    if (segment[i] >= 0) longest = std::max(longest, i % T + 1);
    most_documents = std::max(most_documents, segment[i]);
  }
  longest = std::min(longest, T);
  auto cut = [longest](const torch::Tensor& x) { return x.narrow(1, 0, longest); };
  MicroBatch out{cut(input_ids), cut(targets), {}};
  if (most_documents > 0) out.documents = {cut(documents.positions), cut(documents.segment_ids)};
  return out;
}

// Target tokens of a host batch (targets != -100), counted on the host.
int64_t target_count(const torch::Tensor& targets) {
  const torch::Tensor host = targets.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* value = host.data_ptr<int64_t>();
  return std::count_if(value, value + host.numel(), [](int64_t t) { return t != -100; });
}

}  // namespace

UnitRunner ShardedLlama::runner() {
  // Flat buffers are padded to a multiple of the world size; the model's
  // functional forwards ignore the padding (unit_views), so the padded buffer
  // is passed as it is and its gradient needs no trim's zero-filled copy.
  // The residual stream is fp32 (mixed precision): a unit asked to read its
  // weights in the residual's precision is gathered in fp32.
  return [this](std::size_t u, const torch::Tensor& input, UnitFn fn, UnitPrecision precision) {
    const torch::ScalarType dtype = precision == UnitPrecision::kResidual ? torch::kFloat32 : model_.compute_dtype();
    return model_.run(u, input, std::move(fn), dtype);
  };
}

torch::Tensor ShardedLlama::trunk(const UnitRunner& run, const torch::Tensor& input_ids,
                                  const DocumentLayout& documents) {
  // Mixed precision: the hidden stream between units is fp32 and each unit
  // computes in the model's compute dtype (llama_trunk_forward).
  const LayerActivations activations =
      recompute_ == Recompute::kSelective ? LayerActivations::kRecomputeElementwise : LayerActivations::kKeep;
  return llama_trunk_forward(config_, layouts_, inv_freq_, run, input_ids, documents, {}, torch::kFloat32, nullptr,
                             activations);  // (b, T, C)
}

torch::Tensor ShardedLlama::micro_loss(const torch::Tensor& input_ids, const torch::Tensor& targets,
                                       const DocumentLayout& documents, double normalizer) {
  const UnitRunner run = runner();
  torch::Tensor hidden = trunk(run, input_ids, documents);  // (b, T, C)
  const UnitLayout& embeddings = layouts_[0];
  return run(
      0, hidden,
      [&embeddings, targets, normalizer, chunk_rows = loss_chunk_rows_](const torch::Tensor& x,
                                                                       const torch::Tensor& flat) {
        return head_loss_sum(embeddings, flat, x, targets, chunk_rows) / normalizer;
      },
      UnitPrecision::kCompute);
}

double ShardedLlama::forward_backward(const TrainBatch& batch, int64_t micro_batch, double loss_scale) {
  Communicator& comm = model_.comm();
  const int64_t rows = batch.input_ids.size(0);
  const int64_t world = comm.size();
  const double normalizer = static_cast<double>(target_count(batch.targets));
  MR_CHECK(normalizer > 0, "the global batch has no target tokens");
  MR_CHECK(micro_batch > 0, "micro batch must be positive");

  torch::Tensor mine = torch::arange(comm.rank(), rows, world, torch::kInt64);  // this rank's rows
  const int64_t most_rows = (rows + world - 1) / world;
  const int64_t micro_steps = (most_rows + micro_batch - 1) / micro_batch;
  // Summed on the device and read once per step: a read per micro-step would
  // make the host wait for every micro-step's kernels.
  torch::Tensor local_loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
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
    torch::Tensor loss = micro_loss(micro.input_ids.to(device_), micro.targets.to(device_), micro.documents, normalizer);
    if (count > 0) local_loss += loss.detach();
    (loss * loss_scale).backward();
    model_.end_micro_step();
  }
  double local = 0.0;
  {
    // The step's one wait for the device: under NCCL it also waits for every
    // collective queued on the stream, so a hung peer is caught here by the
    // watchdog (dist.collective_timeout) instead of blocking for ever.
    CollectiveScope watch("the step's loss (waits for the step's kernels and collectives)");
    local = local_loss.item<double>();
  }
  return comm.allreduce_value<double>(local, ReduceOp::kSum);
}

ShardedLlama::LossSum ShardedLlama::loss_sum(const TrainBatch& batch, int64_t micro_batch) {
  torch::NoGradGuard no_grad;
  Communicator& comm = model_.comm();
  const int64_t rows = batch.input_ids.size(0);
  const int64_t world = comm.size();
  MR_CHECK(micro_batch > 0, "micro batch must be positive");
  torch::Tensor mine = torch::arange(comm.rank(), rows, world, torch::kInt64);  // this rank's rows
  const int64_t most_rows = (rows + world - 1) / world;
  const int64_t micro_steps = (most_rows + micro_batch - 1) / micro_batch;
  torch::Tensor local_loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  int64_t local_tokens = 0;
  for (int64_t m = 0; m < micro_steps; ++m) {
    const int64_t begin = m * micro_batch;
    const int64_t count = std::max<int64_t>(0, std::min(micro_batch, mine.size(0) - begin));
    torch::Tensor index = count > 0 ? mine.slice(0, begin, begin + count) : torch::zeros({1}, torch::kInt64);
    auto rows_of = [&index](const torch::Tensor& x) { return x.defined() ? x.index_select(0, index) : x; };
    torch::Tensor targets = rows_of(batch.targets);
    // No rows left here: a zero-weight row keeps this rank in the units' collectives.
    if (count == 0) targets.fill_(-100);
    local_tokens += target_count(targets);
    MicroBatch micro = cut_micro_batch(rows_of(batch.input_ids), targets,
                                       {rows_of(batch.documents.positions), rows_of(batch.documents.segment_ids)});
    local_loss += micro_loss(micro.input_ids.to(device_), micro.targets.to(device_), micro.documents, 1.0);
  }
  double figures[2] = {0.0, static_cast<double>(local_tokens)};
  {
    CollectiveScope watch("the validation loss (waits for its kernels and collectives)");
    figures[0] = local_loss.item<double>();
  }
  comm.allreduce(figures, 2, DType::kFloat64, ReduceOp::kSum);
  return {figures[0], static_cast<int64_t>(figures[1])};
}

torch::Tensor ShardedLlama::logits(const torch::Tensor& input_ids) {
  torch::NoGradGuard no_grad;
  const UnitRunner run = runner();
  torch::Tensor hidden = trunk(run, input_ids.to(device_), {});  // (B, T, C)
  const UnitLayout& embeddings = layouts_[0];
  return run(
      0, hidden,
      [&embeddings](const torch::Tensor& x, const torch::Tensor& flat) {
        return head_forward(embeddings, flat, x);  // (B, T, V)
      },
      UnitPrecision::kCompute);
}

double ShardedLlama::evaluate(const TrainBatch& batch) {
  torch::NoGradGuard no_grad;
  const double normalizer = static_cast<double>(target_count(batch.targets));
  MicroBatch micro = cut_micro_batch(batch.input_ids, batch.targets, batch.documents);
  return micro_loss(micro.input_ids.to(device_), micro.targets.to(device_), micro.documents, normalizer).item<double>();
}

}  // namespace metareuse
