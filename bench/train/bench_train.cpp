// The metareuse route of the CPU training benchmark (bench/train/run.sh, which
// runs it at 1 and 2 ranks beside the Python peers of bench/train/peers.py).
// It trains the sharded Llama from the peers' initial weights (an HF folder)
// on the same documents, step by step: each step's documents are packed by the
// dataset's packer (pack_documents) into rows of the workload's sequence
// length, and trained with the document mask and per-micro-batch padding cut.
//
//   bench_train --init DIR --docs FILE [--recompute auto|always|selective|never] [--micro-batch N]
//
// Prints one JSON line (rank 0): useful tokens/s (document tokens; the first
// step is a warmup, not timed), peak RSS per rank, the last loss, and the
// bytes rank 0 sends per timed step in each kind of collective (all 0 at one
// rank; communicator.h says how they are counted).
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "metareuse/core/timing.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/source.h"
#include "metareuse/parallel/sharded_llama.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/train/trainer.h"

int main(int argc, char** argv) {
  using namespace metareuse;
  std::string init, docs_path, recompute = "auto";
  int64_t micro_batch = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--init") init = argv[i + 1];
    else if (flag == "--docs") docs_path = argv[i + 1];
    else if (flag == "--recompute") recompute = argv[i + 1];
    else if (flag == "--micro-batch") micro_batch = std::atoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_train: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (init.empty() || docs_path.empty()) {
    std::fprintf(stderr, "usage: bench_train --init DIR --docs FILE [--recompute auto|always|selective|never]\n");
    return 2;
  }
  Runtime runtime("auto");
  Communicator& comm = runtime.world();
  nlohmann::json workload;
  std::ifstream(docs_path) >> workload;
  const int64_t T = workload.at("sequence_length").get<int64_t>();

  auto source = open_model_source(init);
  LlamaModel initial = load_model(*source);
  std::map<std::string, torch::Tensor> parameters;
  for (const auto& [name, value] : initial.named_parameters()) parameters.emplace(name, value.detach());
  const LlamaConfig& config = source->config();
  ShardedLlama model(config, comm, torch::kCPU, torch::kFloat32);
  model.load_full(parameters);
  // The trainer's rule: the memory plan decides (no device memory on CPU: auto keeps everything).
  MemoryPlan plan = plan_memory(config, comm.size(), micro_batch, T, "fp32", 0, recompute, model.loss_chunk_rows());
  model.set_recompute(plan.recompute);

  // Every step's documents packed into rows of T, before the clock starts (a dataset file's work).
  std::vector<TrainBatch> batches;
  std::vector<int64_t> useful;
  for (const auto& step : workload.at("steps")) {
    std::vector<DocumentTokens> documents;
    int64_t tokens = 0;
    for (const auto& doc : step) {
      DocumentTokens document;
      document.record = static_cast<int64_t>(documents.size());
      document.example.ids = doc.get<std::vector<TokenId>>();
      document.example.loss_mask.assign(document.example.ids.size(), 1);
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
  for (std::size_t s = 0; s < batches.size(); ++s) {
    comm.barrier();
    if (s == 1) timed_start = collective_traffic();
    Stopwatch watch;
    last_loss = model.forward_backward(batches[s], micro_batch, 1.0);
    optimizer.step(adamw.lr, 1.0, scaler, adam_steps);
    comm.barrier();
    if (s > 0) {
      seconds += watch.seconds();
      timed_tokens += useful[s];
    }
  }
  const CollectiveTraffic timed_traffic = collective_traffic().since(timed_start);  // rank 0's
  const double timed_steps = static_cast<double>(batches.size() - 1);
  double peak = comm.allreduce_value<double>(static_cast<double>(peak_rss_bytes()), ReduceOp::kMax);
  if (comm.rank() == 0) {
    std::printf("{\"route\": \"metareuse\", \"ranks\": %d, \"workload\": \"%s\", \"timed_steps\": %zu, "
                "\"useful_tokens_per_s\": %.1f, \"peak_rss_bytes_per_rank\": %.0f, \"last_loss\": %.6f, "
                "\"recompute\": \"%s\", \"torch_threads\": %d, \"allgather_bytes_per_step\": %.0f, "
                "\"reduce_scatter_bytes_per_step\": %.0f, \"allreduce_bytes_per_step\": %.0f}\n",
                comm.size(), workload.at("workload").get<std::string>().c_str(), batches.size() - 1,
                timed_tokens / seconds, peak, last_loss, recompute_name(plan.recompute), torch::get_num_threads(),
                timed_traffic.allgather.sent / timed_steps, timed_traffic.reduce_scatter.sent / timed_steps,
                timed_traffic.allreduce.sent / timed_steps);
  }
  return 0;
}
