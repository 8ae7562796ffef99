// The metareuse route of the CPU training benchmark (bench/train/run.sh, which
// runs it at 1 and 2 ranks beside the Python peers of bench/train/peers.py).
// It trains the sharded Llama from the initial weights of an HF folder (the
// peers' random init, or a pretrained model) on the same documents, step by
// step: each step's documents are packed by the dataset's packer
// (pack_documents) into rows of the workload's sequence length, and trained
// with the document mask and per-micro-batch padding cut.
//
//   bench_train --init DIR --docs FILE [--precision fp32|bf16] [--recompute auto|always|selective|never]
//               [--micro-batch N] [--overlap on|off] [--profile OUT.json]
//   bench_train --export-documents DATASET.h5
//
// Prints one JSON line (rank 0): useful tokens/s (document tokens; the first
// step is a warmup, not timed), peak RSS per rank, the last loss, the bytes
// rank 0 sends per timed step in each kind of collective (all 0 at one rank;
// communicator.h says how they are counted), and the seconds rank 0 was
// blocked on collectives per timed step (CollectiveTraffic::wait_seconds;
// --overlap off waits for each collective where it is issued). A document's
// loss mask is the docs file's (loss_masks), else every token.
//
// --profile: the steps after the first run under libtorch's profiler (kineto,
// CPU events; our collectives and AdamW's step carry their own scopes), and
// rank 0 writes them in bench/train/op_profile.py's dump format. Those steps
// are slower than unprofiled ones: run.sh profiles in a pass of its own.
//
// --export-documents: a dataset file of `metareuse prepare`, its training
// documents in record order as JSON lines on stdout, after one line with the
// sequence length: {"sequence_length": T, "documents": D}, then {"ids": [...],
// "loss_mask": [...]} per document (peers.py docs c groups them into steps).
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_kineto.h>  // enableProfiler/disableProfiler: --profile
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "metareuse/core/timing.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/source.h"
#include "metareuse/parallel/sharded_llama.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/train/trainer.h"

using namespace metareuse;

namespace {

// The training documents of a dataset file, in record order (--export-documents).
int export_documents(const std::string& path) {
  const PackedDataset data = load_dataset(path);
  const nlohmann::json header{{"sequence_length", data.metadata.sequence_length}, {"documents", data.documents.size() / 4}};
  std::cout << header.dump() << '\n';
  for (std::size_t d = 0; d * 4 < data.documents.size(); ++d) {
    const int64_t sequence = data.documents[4 * d + 1], offset = data.documents[4 * d + 2];
    const int64_t length = data.documents[4 * d + 3];
    const TokenId* ids = data.row(data.tokens, sequence) + offset;
    const std::uint8_t* mask = data.row(data.loss_mask, sequence) + offset;
    nlohmann::json line{{"ids", std::vector<TokenId>(ids, ids + length)},
                        {"loss_mask", std::vector<int>(mask, mask + length)}};
    std::cout << line.dump() << '\n';
  }
  return std::cout ? 0 : 1;
}

namespace kineto = torch::autograd::profiler;
namespace profiler_impl = torch::profiler::impl;

const std::set<profiler_impl::ActivityType>& cpu_activity() {
  static const std::set<profiler_impl::ActivityType> cpu{profiler_impl::ActivityType::CPU};
  return cpu;
}

void start_profiler() {
  const profiler_impl::ProfilerConfig config(profiler_impl::ProfilerState::KINETO);
  kineto::prepareProfiler(config, cpu_activity());
  kineto::enableProfiler(config, cpu_activity());
}

// Stops the profiler and writes its CPU events in op_profile.py's dump format.
void write_profile(const std::string& path, const nlohmann::json& meta, std::size_t steps, double wall_seconds) {
  std::unique_ptr<kineto::ProfilerResult> result = kineto::disableProfiler();
  nlohmann::json dump = meta;
  dump["steps"] = steps;
  dump["wall_ns"] = static_cast<int64_t>(wall_seconds * 1e9);
  nlohmann::json events = nlohmann::json::array();
  for (const kineto::KinetoEvent& event : result->events()) {
    if (event.deviceType() != c10::DeviceType::CPU || event.isAsync()) continue;
    events.push_back({event.name(), event.startThreadId(), event.startNs(), event.durationNs()});
  }
  dump["events"] = std::move(events);
  std::ofstream out(path);
  out << dump.dump();
  if (!out) throw std::runtime_error("bench_train: cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  std::string init, docs_path, recompute = "auto", precision = "fp32", profile_path, export_path, overlap = "on";
  int64_t micro_batch = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--init") init = argv[i + 1];
    else if (flag == "--docs") docs_path = argv[i + 1];
    else if (flag == "--recompute") recompute = argv[i + 1];
    else if (flag == "--micro-batch") micro_batch = std::atoll(argv[i + 1]);
    else if (flag == "--precision") precision = argv[i + 1];
    else if (flag == "--overlap") overlap = argv[i + 1];
    else if (flag == "--profile") profile_path = argv[i + 1];
    else if (flag == "--export-documents") export_path = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_train: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (!export_path.empty()) return export_documents(export_path);
  if (init.empty() || docs_path.empty()) {
    std::fprintf(stderr, "usage: bench_train --init DIR --docs FILE [--precision fp32|bf16] "
                         "[--recompute auto|always|selective|never] [--micro-batch N] [--overlap on|off] "
                         "[--profile OUT.json]\n"
                         "       bench_train --export-documents DATASET.h5\n");
    return 2;
  }
  if (overlap != "on" && overlap != "off") {
    std::fprintf(stderr, "bench_train: --overlap must be on or off, got %s\n", overlap.c_str());
    return 2;
  }
  if (precision != "fp32" && precision != "bf16") {
    std::fprintf(stderr, "bench_train: --precision must be fp32 or bf16, got %s\n", precision.c_str());
    return 2;
  }
  Runtime runtime("auto");
  Communicator& comm = runtime.world();
  nlohmann::json workload;
  std::ifstream(docs_path) >> workload;
  const int64_t T = workload.at("sequence_length").get<int64_t>();

  // The weights, as the trainer loads model.path: one unit at a time into its shards (no rank holds the
  // whole model unsharded), the source kept open while training runs.
  const std::unique_ptr<ModelSource> source = open_model_source(init);
  const LlamaConfig& config = source->config();
  // bf16: the units are gathered and computed in bf16, the master weights and AdamW stay fp32 (train.precision).
  ShardedLlama model(config, comm, torch::kCPU, compute_dtype(precision));
  for (std::size_t u = 0; u < model.sharded().size(); ++u) {
    const UnitLayout& layout = model.sharded().unit(u).layout();
    const torch::Tensor flat = source->read_unit(layout, torch::kFloat32);  // (numel,)
    const std::vector<torch::Tensor> views = unit_views(layout, flat);
    std::map<std::string, torch::Tensor> parameters;
    for (std::size_t i = 0; i < views.size(); ++i) parameters.emplace(layout.parameters[i].name, views[i]);
    model.sharded().unit(u).load_full(parameters);
  }
  // The trainer's rule: the memory plan decides (no device memory on CPU: auto keeps everything).
  MemoryPlan plan = plan_memory(config, comm.size(), micro_batch, T, precision, 0, recompute, model.loss_chunk_rows(),
                                overlap == "on");
  model.set_recompute(plan.recompute);
  model.sharded().set_overlap(overlap == "on");

  // Every step's documents packed into rows of T, before the clock starts (a dataset file's work).
  const nlohmann::json& steps = workload.at("steps");
  const nlohmann::json no_masks;
  const nlohmann::json& masks = workload.contains("loss_masks") ? workload.at("loss_masks") : no_masks;
  std::vector<TrainBatch> batches;
  std::vector<int64_t> useful;
  for (std::size_t s = 0; s < steps.size(); ++s) {
    std::vector<DocumentTokens> documents;
    int64_t tokens = 0;
    for (std::size_t d = 0; d < steps[s].size(); ++d) {
      DocumentTokens document;
      document.record = static_cast<int64_t>(documents.size());
      document.example.ids = steps[s][d].get<std::vector<TokenId>>();
      if (masks.is_null()) document.example.loss_mask.assign(document.example.ids.size(), 1);
      else document.example.loss_mask = masks.at(s).at(d).get<std::vector<std::uint8_t>>();
      tokens += static_cast<int64_t>(document.example.ids.size());
      documents.push_back(std::move(document));
    }
    PackedDataset packed = pack_documents(std::move(documents), T, /*pack=*/true, /*pad_id=*/0);
    std::vector<int64_t> rows(static_cast<std::size_t>(packed.sequences));
    for (int64_t r = 0; r < packed.sequences; ++r) rows[static_cast<std::size_t>(r)] = r;
    batches.push_back(train_batch_of(packed, rows));
    useful.push_back(tokens);
  }

  LossScaler scaler(LossScalerConfig{});
  int64_t adam_steps = 0;
  AdamWConfig adamw{3e-4, 0.9, 0.95, 1e-8, 0.1};
  AdamW optimizer(model.sharded(), adamw);
  double seconds = 0.0, last_loss = 0.0;
  int64_t timed_tokens = 0;
  CollectiveTraffic timed_start;  // from the first timed step on (barriers move no bytes)
  const bool profiling = !profile_path.empty() && comm.rank() == 0;
  for (std::size_t s = 0; s < batches.size(); ++s) {
    comm.barrier();
    if (s == 1) {
      timed_start = collective_traffic();
      if (profiling) start_profiler();
    }
    Stopwatch watch;
    last_loss = model.forward_backward(batches[s], micro_batch, 1.0);
    optimizer.step(adamw.lr, 1.0, scaler, adam_steps);
    comm.barrier();
    if (s > 0) {
      seconds += watch.seconds();
      timed_tokens += useful[s];
    }
  }
  if (profiling && batches.size() > 1) {
    write_profile(profile_path, {{"route", "metareuse"}, {"workload", workload.at("workload")}, {"precision", precision}},
                  batches.size() - 1, seconds);
  }
  const CollectiveTraffic timed_traffic = collective_traffic().since(timed_start);  // rank 0's
  const double timed_steps = static_cast<double>(batches.size() - 1);
  double peak = comm.allreduce_value<double>(static_cast<double>(peak_rss_bytes()), ReduceOp::kMax);
  if (comm.rank() == 0) {
    std::printf("{\"route\": \"metareuse\", \"ranks\": %d, \"workload\": \"%s\", \"timed_steps\": %zu, "
                "\"precision\": \"%s\", \"useful_tokens_per_s\": %.1f, \"peak_rss_bytes_per_rank\": %.0f, "
                "\"last_loss\": %.6f, "
                "\"recompute\": \"%s\", \"torch_threads\": %d, \"allgather_bytes_per_step\": %.0f, "
                "\"reduce_scatter_bytes_per_step\": %.0f, \"allreduce_bytes_per_step\": %.0f, \"overlap\": %s, "
                "\"comm_wait_s_per_step\": %.4f}\n",
                comm.size(), workload.at("workload").get<std::string>().c_str(), batches.size() - 1,
                precision.c_str(), timed_tokens / seconds, peak, last_loss, recompute_name(plan.recompute),
                torch::get_num_threads(),
                timed_traffic.allgather.sent / timed_steps, timed_traffic.reduce_scatter.sent / timed_steps,
                timed_traffic.allreduce.sent / timed_steps, overlap == "on" ? "true" : "false",
                timed_traffic.wait_seconds / timed_steps);
  }
  return 0;
}
