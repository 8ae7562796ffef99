// CPU training throughput of the sharded trainer on the CPU bench shape
// (preset debug-small: vocab 8192, dim 256, 4 layers, 8 heads, 4 KV heads,
// FFN 688; seq 256, global batch 8, AdamW, fp32). Run alone or under mpirun;
// bench/train/run.sh runs it at 1 and 2 ranks beside the plain PyTorch loop.
// Prints one JSON line (rank 0): tokens/s and peak RSS per rank.
#include <fmt/format.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

#include "metareuse/core/timing.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/llama.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/parallel/sharded_llama.h"

int main(int argc, char** argv) {
  using namespace metareuse;
  const int steps = argc > 1 ? std::atoi(argv[1]) : 10;
  const int warmup = 2;
  const int64_t batch = 8, T = 256;
  Runtime runtime("auto");
  Communicator& comm = runtime.world();
  LlamaConfig config = LlamaConfig::preset("debug-small");
  LlamaModel initial(config);
  initial.init_weights(1);
  std::map<std::string, torch::Tensor> parameters;
  for (const auto& [name, value] : initial.named_parameters()) parameters.emplace(name, value.detach());
  ShardedLlama model(config, comm, torch::kCPU, torch::kFloat32, "matrices");
  model.load_full(parameters);
  LossScaler scaler(LossScalerConfig{});
  int64_t adam_steps = 0;
  torch::Generator generator = at::detail::createCPUGenerator(5);
  const int64_t micro = batch / comm.size() > 0 ? batch / comm.size() : 1;

  double seconds = 0.0, last_loss = 0.0;
  for (int s = 0; s < warmup + steps; ++s) {
    torch::Tensor ids = torch::randint(0, config.vocab_size, {batch, T}, generator, torch::kInt64);
    TrainBatch global{ids, next_token_targets(ids)};
    comm.barrier();
    Stopwatch watch;
    last_loss = model.forward_backward(global, micro, 1.0);
    optimizer_step(model.sharded(), AdamWConfig{}, 3e-4, 1.0, scaler, adam_steps);
    comm.barrier();
    if (s >= warmup) seconds += watch.seconds();
  }
  double peak = comm.allreduce_value<double>(static_cast<double>(peak_rss_bytes()), ReduceOp::kMax);
  if (comm.rank() == 0) {
    std::printf("{\"route\": \"metareuse\", \"ranks\": %d, \"steps\": %d, \"tokens_per_s\": %.1f, "
                "\"peak_rss_bytes_per_rank\": %.0f, \"last_loss\": %.4f, \"torch_threads\": %d}\n",
                comm.size(), steps, steps * batch * T / seconds, peak, last_loss, torch::get_num_threads());
  }
  return 0;
}
