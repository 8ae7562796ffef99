// Training throughput of metareuse's trainer on one GPU: Llama 3.2
// shapes with random initialisation, the ShardedLlama forward/backward and the
// sharded AdamW step, exactly as `metareuse train` runs them. Prints one JSON
// line per shape (the fields of ../shared/hf_baseline.py, so bench/gpu/run.sh
// can put both side by side).
//
//   bench_train_gpu [--shapes 1b,3b] [--seq 2048] [--batches 8,4,2,1] [--precision fp16]
//                   [--steps 8] [--warmup 3] [--recompute auto|always|selective|never] [--out FILE.jsonl]
//
// What backward recomputes follows the trainer's rule: the memory plan for
// the card's memory decides train.recompute=auto (keep everything when it
// fits, else selective, else whole units), and the line says which it took.
//
// For each shape the batches are tried largest first; the first that fits is
// measured (out of memory moves on to the next). Without a CUDA device it says
// so and exits 2.
#include <fmt/format.h>
#include <torch/torch.h>

#if defined(METAREUSE_WITH_NCCL)
// A CUDA build: the caching allocator's peak and the device name.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "metareuse/core/error.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/device_communicator.h"
#include "metareuse/model/config.h"
#include "metareuse/train/memory_plan.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/parallel/sharded_llama.h"

namespace {

using metareuse::LlamaConfig;

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Training FLOPs per token, counted as ../shared/hf_baseline.py counts them:
// 6 x (matmul parameters) + 6 x attention (QK^T and AV, causal not discounted).
struct FlopCount {
  double per_token = 0;
  int64_t matmul_parameters = 0;
};
FlopCount flops_per_token(const LlamaConfig& config, int64_t T) {
  const int64_t h = config.hidden_size, L = config.num_hidden_layers, V = config.vocab_size;
  const int64_t I = config.intermediate_size;
  const int64_t kv = config.head_dim * config.num_key_value_heads;
  const int64_t per_layer = 2 * h * h + 2 * h * kv + 3 * h * I;
  FlopCount out;
  out.matmul_parameters = L * per_layer + h * V;
  const double attention = static_cast<double>(L) * 2.0 * static_cast<double>(T) * static_cast<double>(h);
  out.per_token = 6.0 * static_cast<double>(out.matmul_parameters) + 6.0 * attention;
  return out;
}

double peak_gib(int device) {
#if defined(METAREUSE_WITH_NCCL)
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  // Index 0 is StatType::AGGREGATE (all pools); the enum moved namespaces
  // between libtorch releases, its value did not.
  return static_cast<double>(stats.allocated_bytes[0].peak) /
         (1024.0 * 1024.0 * 1024.0);
#else
  (void)device;
  return -1.0;  // a CPU libtorch build: no allocator statistics
#endif
}

void reset_peak(int device) {
#if defined(METAREUSE_WITH_NCCL)
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#else
  (void)device;
#endif
}

std::string device_name(int device) {
#if defined(METAREUSE_WITH_NCCL)
  return at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(device))->name;
#else
  return fmt::format("cuda:{}", device);
#endif
}

int64_t device_memory(int device) {
#if defined(METAREUSE_WITH_NCCL)
  return static_cast<int64_t>(at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(device))->totalGlobalMem);
#else
  (void)device;
  return 0;  // unknown: the plan keeps everything
#endif
}

bool is_out_of_memory(const std::exception& error) {
  return std::string(error.what()).find("out of memory") != std::string::npos;
}

// Random initialisation straight on the device, one unit at a time (the
// model's init: norms 1, matrices N(0, initializer_range)).
void init_on_device(metareuse::ShardedLlama& model, const LlamaConfig& config, torch::Device device) {
  torch::NoGradGuard no_grad;
  auto& sharded = model.sharded();
  for (std::size_t u = 0; u < sharded.size(); ++u) {
    std::map<std::string, torch::Tensor> full;
    for (const auto& spec : sharded.unit(u).layout().parameters) {
      auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
      full[spec.name] = spec.shape.size() == 1 ? torch::ones(spec.shape, options)
                                               : torch::randn(spec.shape, options) * config.initializer_range;
    }
    sharded.unit(u).load_full(full);
  }
}

struct Measured {
  int64_t batch = 0;
  double step_seconds = 0;
  double loss = 0;
  int64_t skipped = 0;
  double peak = 0;
  std::string recompute;  // what the plan chose
};

Measured measure(const LlamaConfig& config, metareuse::Communicator& comm, torch::Device device,
                 const std::string& precision, torch::ScalarType dtype, int64_t T, int64_t batch, int steps,
                 int warmup, const std::string& recompute) {
  metareuse::ShardedLlama model(config, comm, device, dtype);
  const metareuse::MemoryPlan plan = metareuse::plan_memory(config, comm.size(), batch, T, precision,
                                                            device_memory(device.index()), recompute,
                                                            model.loss_chunk_rows());
  model.set_recompute(plan.recompute);
  init_on_device(model, config, device);
  metareuse::AdamW optimizer(model.sharded(), metareuse::AdamWConfig{1e-5, 0.9, 0.95, 1e-8, 0.1});
  metareuse::LossScalerConfig scaling;
  scaling.enabled = dtype == torch::kFloat16;
  metareuse::LossScaler scaler(scaling);
  int64_t adam_steps = 0;

  metareuse::TrainBatch data;
  data.input_ids = torch::randint(0, config.vocab_size, {batch, T}, torch::kInt64);  // (B, T), host
  data.targets = metareuse::next_token_targets(data.input_ids);                      // (B, T)

  Measured out;
  out.batch = batch;
  out.recompute = metareuse::recompute_name(plan.recompute);
  auto step = [&]() {
    out.loss = model.forward_backward(data, batch, scaler.scale());
    auto outcome = optimizer.step(1e-5, 1.0, scaler, adam_steps);
    if (outcome.skipped) ++out.skipped;
  };
  for (int i = 0; i < warmup; ++i) step();
  out.skipped = 0;
  torch::cuda::synchronize();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  torch::cuda::synchronize();
  out.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
  out.peak = peak_gib(device.index());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> shapes = {"1b", "3b"};
  std::vector<int64_t> batches = {8, 4, 2, 1};
  int64_t T = 2048;
  std::string precision = "fp16";
  int steps = 8, warmup = 3;
  std::string out_path, recompute = "auto";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(64);
      }
      return argv[++i];
    };
    if (arg == "--shapes") shapes = split(value());
    else if (arg == "--seq") T = std::stoll(value());
    else if (arg == "--batches") {
      batches.clear();
      for (const auto& b : split(value())) batches.push_back(std::stoll(b));
    } else if (arg == "--precision") precision = value();
    else if (arg == "--steps") steps = std::stoi(value());
    else if (arg == "--warmup") warmup = std::stoi(value());
    else if (arg == "--out") out_path = value();
    else if (arg == "--recompute") recompute = value();
    else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 64;
    }
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "bench_train_gpu: libtorch sees no CUDA device; nothing to measure\n");
    return 2;
  }
  const torch::ScalarType dtype = precision == "fp16"   ? torch::kFloat16
                                  : precision == "bf16" ? torch::kBFloat16
                                                        : torch::kFloat32;
  const torch::Device device(torch::kCUDA, 0);
  // One rank: the collectives go through the NCCL backend when the build has
  // it (a one-rank NCCL communicator), else they are the identity.
  auto comm = metareuse::make_self_communicator();
  std::ofstream out;
  if (!out_path.empty()) out.open(out_path, std::ios::app);

  for (const auto& shape : shapes) {
    LlamaConfig config = LlamaConfig::preset("llama3.2-" + shape);
    const FlopCount flops = flops_per_token(config, T);
    bool done = false;
    for (int64_t batch : batches) {
      reset_peak(device.index());
      try {
        Measured m = measure(config, *comm, device, precision, dtype, T, batch, steps, warmup, recompute);
        const double tokens_per_s = static_cast<double>(batch * T) / m.step_seconds;
        std::string line = fmt::format(
            "{{\"run\": \"metareuse-llama3.2-{}\", \"route\": \"metareuse\", \"precision\": \"{}\", \"seq\": {}, "
            "\"batch\": {}, \"step_s\": {:.4f}, \"tokens_per_s\": {:.0f}, \"tflops\": {:.1f}, \"matmul_params\": {}, "
            "\"loss\": {:.3f}, \"skipped_steps\": {}, \"peak_mem_gib\": {:.1f}, \"recompute\": \"{}\", \"device\": \"{}\"}}",
            shape, precision, T, batch, m.step_seconds, tokens_per_s, flops.per_token * tokens_per_s / 1e12,
            flops.matmul_parameters, m.loss, m.skipped, m.peak, m.recompute, device_name(device.index()));
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        if (out) out << line << "\n";
        done = true;
        break;
      } catch (const std::exception& error) {
        if (!is_out_of_memory(error)) throw;
        std::printf("{\"run\": \"metareuse-llama3.2-%s\", \"batch\": %lld, \"error\": \"OOM\"}\n", shape.c_str(),
                    static_cast<long long>(batch));
        std::fflush(stdout);
      }
    }
    if (!done) std::fprintf(stderr, "bench_train_gpu: llama3.2-%s did not fit at any batch\n", shape.c_str());
  }
  // NCCL communicators go before the CUDA runtime's teardown at exit.
  metareuse::release_device_communicators();
  return 0;
}
