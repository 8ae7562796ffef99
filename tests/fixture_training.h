// Trains the fixture ../shared/fixtures/hf_tiny_llama32 with the sharded
// engine, test_train's reference test's settings: AdamW lr 3e-3, betas (0.9, 0.95),
// weight decay 0.1 on every parameter, grad-norm clip 1.0, micro-batches of
// one row, the fixture's six batches cycled. Shared by the CPU (test_train)
// and CUDA (test_gpu) trajectory tests, so both train the same way.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "metareuse/distributed/communicator.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/parallel/sharded_llama.h"
#include "metareuse/train/optimizer.h"

namespace metareuse::test {

inline std::map<std::string, torch::Tensor> parameters_of(const LlamaModel& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, value] : model.named_parameters()) out.emplace(name, value.detach());
  return out;
}

struct Trajectory {
  std::vector<double> losses;
  std::vector<double> grad_norms;
  int64_t skipped = 0;
  std::map<std::string, torch::Tensor> final_parameters;
};

// `steps` optimizer steps on `device` in `dtype`; fp16 scales the loss,
// starting at 2^10: the tiny model's gradients overflow fp16 at the default
// 2^16, and a skipped step would make the trajectories incomparable.
inline Trajectory train_fixture(const std::string& fixture, Communicator& comm, torch::Device device,
                                torch::ScalarType dtype, int steps) {
  auto source = open_model_source(fixture);
  LlamaModel reference = load_model(*source);
  ShardedLlama model(source->config(), comm, device, dtype);
  model.load_full(parameters_of(reference));
  SafetensorsFile batches(fixture + "/train_batches.safetensors");
  AdamW optimizer(model.sharded(), AdamWConfig{3e-3, 0.9, 0.95, 1e-8, 0.1, "all"});
  LossScalerConfig scaling;
  scaling.enabled = dtype == torch::kFloat16;
  scaling.initial_scale = 1024.0;
  LossScaler scaler(scaling);
  int64_t adam_steps = 0;
  Trajectory out;
  for (int s = 0; s < steps; ++s) {
    torch::Tensor ids = batches.tensor("batch" + std::to_string(s % 6));  // (4, 32)
    TrainBatch batch{ids, next_token_targets(ids)};
    out.losses.push_back(model.forward_backward(batch, 1, scaler.scale()));
    StepOutcome outcome = optimizer.step(3e-3, 1.0, scaler, adam_steps);
    out.grad_norms.push_back(outcome.grad_norm);
    if (outcome.skipped) ++out.skipped;
  }
  out.final_parameters = model.sharded().gather_full();
  return out;
}

}  // namespace metareuse::test
