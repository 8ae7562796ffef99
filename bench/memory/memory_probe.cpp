// One rank's memory in a training step, measured against `metareuse plan`.
//
// Runs one rank's exact share of an N-rank job in one process: the loopback
// communicator (distributed/communicator.h) acts as rank r of N with no peers,
// so the shards, the gathered units and the reduce-scatter buffers have the
// sizes they have in the real job. Two optimizer steps of one micro-batch,
// then the peak of allocated bytes beside plan_memory's per-rank total.
//   CPU:  allocations reported by libtorch's CPU allocator (a memory-reporting
//         hook, the one torch.profiler's profile_memory uses);
//   CUDA: the caching allocator's peak allocated bytes; --memory-fraction caps
//         the allocator (16/80: a 16 GB P100 on an 80 GB card), so an out of
//         memory there is the real answer to "does it fit".
//
// --model takes the shape and the weights from a Hugging Face folder instead
// of a preset (loaded before the count starts); --loss-chunk-rows is
// train.loss_chunk_rows (0: the head's logits whole; bench/memory/chunked_loss.sh
// compares the two).
//
//   memory_probe --preset llama3.2-3b --layers 2 --ranks 8 --seq 1024 --precision bf16
//   memory_probe --model build/models/SmolLM2-135M-Instruct --ranks 1 --seq 1024 --loss-chunk-rows 0
//   memory_probe ... --json out.json
// Prints one table and exits 0 when measured, 2 when CUDA is asked for and absent.
#include <CLI/CLI.hpp>
#include <c10/core/CPUAllocator.h>       // memory reporting of CPU allocations
#include <c10/util/ThreadLocalDebugInfo.h>  // DebugInfoGuard: installs the reporter
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#if defined(METAREUSE_WITH_NCCL)
#include <c10/cuda/CUDACachingAllocator.h>  // the CUDA allocator's peak and memory fraction
#endif

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "metareuse/core/timing.h"  // peak_rss_bytes, format_bytes
#include "metareuse/distributed/communicator.h"
#include "metareuse/model/chunked_loss.h"  // kLossChunkRowsDefault
#include "metareuse/model/config.h"
#include "metareuse/model/source.h"  // --model: open_model_source, load_model
#include "metareuse/parallel/sharded_llama.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/train/trainer.h"  // plan_memory, compute_dtype

namespace {

using metareuse::format_bytes;

// The peak of bytes allocated on the CPU since it was installed. The CPU
// allocator reports each allocation's running total while a reporter that
// asks for it is installed on the thread (and the threads autograd and
// at::parallel_for run work on, which inherit the thread's debug info).
class CpuPeak final : public c10::MemoryReportingInfoBase {
 public:
  bool memoryProfilingEnabled() const override { return true; }
  void reportMemoryUsage(void*, int64_t, size_t total_allocated, size_t, c10::Device device) override {
    if (!device.is_cpu()) return;
    const int64_t now = static_cast<int64_t>(total_allocated);
    int64_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
  }
  void reportOutOfMemory(int64_t, size_t, size_t, c10::Device) override {}
  int64_t peak() const { return peak_.load(); }
  // Forgets the peak so far: the next allocation reports the bytes still held.
  void restart() { peak_.store(0); }

 private:
  std::atomic<int64_t> peak_{0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"One rank's training-step memory, measured beside metareuse plan's figure"};
  std::string preset = "llama3.2-3b", model_path, precision = "bf16", device_name = "cpu", recompute = "always",
              json_path;
  int64_t layers = 2, ranks = 8, rank = 0, seq = 1024, micro_batch = 1,
          loss_chunk_rows = metareuse::kLossChunkRowsDefault;
  double memory_fraction = 0.0;
  app.add_option("--preset", preset, "model.preset to take the shape from");
  CLI::Option* layers_option =
      app.add_option("--layers", layers, "Decoder layers (the rest of the shape is the preset's)");
  app.add_option("--model", model_path, "A Hugging Face model folder: its shape and weights instead of --preset's")
      ->excludes(layers_option);
  app.add_option("--loss-chunk-rows", loss_chunk_rows, "train.loss_chunk_rows (0: the head's logits whole)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ranks", ranks, "Ranks of the job this process is one rank of");
  app.add_option("--rank", rank, "Which rank this process is");
  app.add_option("--seq", seq, "Sequence length");
  app.add_option("--micro-batch", micro_batch, "Rows per micro-batch (one micro-step per step)");
  app.add_option("--precision", precision, "fp32, bf16 or fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--recompute", recompute, "train.recompute: always, selective or never")
      ->check(CLI::IsMember({"always", "selective", "never"}));
  app.add_option("--device", device_name, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--memory-fraction", memory_fraction, "CUDA: cap the allocator at this fraction of the card");
  app.add_option("--json", json_path, "Also write the figures here");
  CLI11_PARSE(app, argc, argv);

  const bool cuda = device_name == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::fprintf(stderr, "memory_probe: --device cuda, but libtorch sees no CUDA device\n");
    return 2;
  }
  torch::manual_seed(0);
  std::unique_ptr<metareuse::ModelSource> source;
  if (!model_path.empty()) {
    source = metareuse::open_model_source(model_path);
    preset = model_path;
  }
  metareuse::LlamaConfig config = source ? source->config() : metareuse::LlamaConfig::preset(preset);
  if (source) {
    layers = config.num_hidden_layers;
  } else {
    config.num_hidden_layers = layers;
  }
  const metareuse::MemoryPlan plan =
      metareuse::plan_memory(config, ranks, micro_batch, seq, precision, 0, recompute, loss_chunk_rows);
  // Loaded before the count starts: only this rank's shards stay.
  std::map<std::string, torch::Tensor> weights;
  if (source) {
    const metareuse::LlamaModel loaded = metareuse::load_model(*source);
    for (const auto& [name, value] : loaded.named_parameters()) weights.emplace(name, value.detach());
  }
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);

  auto cpu_peak = std::make_shared<CpuPeak>();
  std::unique_ptr<c10::DebugInfoGuard> reporting;
  int64_t cuda_baseline = 0;
#if defined(METAREUSE_WITH_NCCL)
  if (cuda) {
    if (memory_fraction > 0) c10::cuda::CUDACachingAllocator::setMemoryFraction(memory_fraction, 0);
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
    cuda_baseline = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
  }
#endif
  if (!cuda) reporting = std::make_unique<c10::DebugInfoGuard>(c10::DebugInfoKind::PROFILER_STATE, cpu_peak);

  std::string outcome = "measured";
  double seconds = 0.0;
  try {
    auto comm = metareuse::make_loopback_communicator(static_cast<int>(rank), static_cast<int>(ranks));
    metareuse::ShardedLlama model(config, *comm, device, metareuse::compute_dtype(precision));
    model.set_recompute(plan.recompute);
    model.set_loss_chunk_rows(loss_chunk_rows);
    if (source) {
      model.load_full(weights);
      weights.clear();
      // The full weights were a loading step's, not the training step's.
      cpu_peak->restart();
#if defined(METAREUSE_WITH_NCCL)
      if (cuda) c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
    } else {
      torch::NoGradGuard no_grad;
      for (std::size_t u = 0; u < model.sharded().size(); ++u) model.sharded().unit(u).master().normal_(0.0, 0.02);
    }
    metareuse::AdamW optimizer(model.sharded(), metareuse::AdamWConfig{});
    metareuse::LossScalerConfig scaling;
    scaling.enabled = precision == "fp16";
    metareuse::LossScaler scaler(scaling);
    // The global batch holds one micro-batch per rank: this rank runs one micro-step.
    torch::Tensor ids = torch::randint(0, config.vocab_size, {micro_batch * ranks, seq}, torch::kInt64);
    const metareuse::TrainBatch batch{ids, metareuse::next_token_targets(ids)};
    int64_t adam_steps = 0;
    metareuse::Stopwatch watch;
    for (int step = 0; step < 2; ++step) {
      model.forward_backward(batch, micro_batch, scaler.scale());
      optimizer.step(1e-4, 1.0, scaler, adam_steps);
    }
    seconds = watch.seconds() / 2.0;
  } catch (const std::exception& error) {
    const std::string message = error.what();
    if (message.find("out of memory") == std::string::npos) throw;
    outcome = "out of memory";
  }
  reporting.reset();

  int64_t peak = cpu_peak->peak();
#if defined(METAREUSE_WITH_NCCL)
  if (cuda) peak = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak - cuda_baseline;
#endif
  const int64_t planned = metareuse::planned_total(plan, plan.recompute);
  const double ratio = planned > 0 ? static_cast<double>(peak) / static_cast<double>(planned) : 0.0;
  std::printf("%s", metareuse::format_plan(plan).c_str());
  std::printf(
      "memory probe: %s, %lld layers, rank %lld of %lld, seq %lld, micro-batch %lld, %s, recompute %s, loss chunk "
      "rows %lld, %s\n",
      preset.c_str(), static_cast<long long>(layers), static_cast<long long>(rank), static_cast<long long>(ranks),
      static_cast<long long>(seq), static_cast<long long>(micro_batch), precision.c_str(), recompute.c_str(),
      static_cast<long long>(loss_chunk_rows), device.str().c_str());
  std::printf("  %-34s %14s\n", "planned per rank", format_bytes(static_cast<double>(planned)).c_str());
  std::printf("  %-34s %14s  (%s)\n", "measured peak allocated", format_bytes(static_cast<double>(peak)).c_str(),
              outcome.c_str());
  std::printf("  %-34s %14.3f\n", "measured / planned", ratio);
  std::printf("  %-34s %14.1f\n", "seconds per step", seconds);
  std::printf("  %-34s %14s\n", "peak RSS of the process",
              format_bytes(static_cast<double>(metareuse::peak_rss_bytes())).c_str());
  if (!json_path.empty()) {
    nlohmann::json out = {{"preset", preset},       {"layers", layers},         {"ranks", ranks},
                          {"rank", rank},           {"seq", seq},               {"micro_batch", micro_batch},
                          {"precision", precision}, {"recompute", recompute},   {"device", device.str()},
                          {"outcome", outcome},     {"planned_bytes", planned}, {"measured_peak_bytes", peak},
                          {"ratio", ratio},         {"seconds_per_step", seconds},
                          {"memory_fraction", memory_fraction}, {"loss_chunk_rows", loss_chunk_rows}};
    std::ofstream(json_path) << out.dump(2) << "\n";
  }
  return 0;
}
