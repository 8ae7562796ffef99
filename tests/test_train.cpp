// Training on the sharding engine, against references no one here wrote:
//   1. the Hugging Face AdamW trajectory of ../shared/fixtures/hf_tiny_llama32
//      (losses, pre-clip grad norms, final parameters), at 1, 2 and 3 ranks;
//   2. rank-count invariance: the same 20 steps at N ranks and at 1 rank give
//      the same losses to 1e-5 relative;
//   3. the stop signals: a first SIGINT is a stop request like SIGTERM, a
//      second one ends the process.
#include "torch_catch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "metareuse/distributed/runtime.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/train/stop_signals.h"
#include "metareuse/parallel/sharded_llama.h"
#include "test_support.h"

using namespace metareuse;

namespace {

std::map<std::string, torch::Tensor> named_parameters(const LlamaModel& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, value] : model.named_parameters()) out.emplace(name, value.detach());
  return out;
}

}  // namespace

TEST_CASE("sharded training follows the Hugging Face AdamW trajectory", "[train][reference]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  const std::string fixture = shared + "/fixtures/hf_tiny_llama32";
  Communicator& comm = test::runtime().world();

  auto source = open_model_source(fixture);
  LlamaModel reference = load_model(*source);
  // train.json: weight decay 0.1 on every parameter.
  ShardedLlama model(source->config(), comm, torch::kCPU, torch::kFloat32, "all");
  model.load_full(named_parameters(reference));

  nlohmann::json expected;
  std::ifstream(fixture + "/train.json") >> expected;
  SafetensorsFile batches(fixture + "/train_batches.safetensors");
  AdamWConfig adamw{3e-3, 0.9, 0.95, 1e-8, 0.1};
  LossScaler scaler(LossScalerConfig{});
  int64_t step = 0;
  for (int s = 0; s < 6; ++s) {
    torch::Tensor ids = batches.tensor("batch" + std::to_string(s));  // (4, 32)
    TrainBatch batch{ids, next_token_targets(ids)};
    // Micro-batches of one row: gradient accumulation is exercised at every rank count.
    double loss = model.forward_backward(batch, 1, 1.0);
    StepOutcome outcome = optimizer_step(model.sharded(), adamw, 3e-3, 1.0, scaler, step);
    INFO("step " << s << " at " << comm.size() << " ranks");
    double expected_loss = expected["losses"][s].get<double>();
    CHECK(std::abs(loss - expected_loss) <= 1e-4 * std::abs(expected_loss));
    double expected_norm = expected["grad_norms_before_clip"][s].get<double>();
    CHECK(std::abs(outcome.grad_norm - expected_norm) <= 1e-4 * expected_norm);
  }

  SafetensorsFile final_params(fixture + "/train_final.safetensors");
  auto trained = model.sharded().gather_full();
  for (const auto& name : final_params.names()) {
    INFO(name);
    torch::Tensor want = final_params.tensor(name, torch::kFloat32);
    REQUIRE(trained.count(name) == 1);
    double max_error = (trained.at(name) - want).abs().max().item<double>();
    // Adam normalises each step, so an fp32 rounding difference in a gradient
    // near zero can move a weight by up to ~lr; 1e-4 is well below lr = 3e-3.
    CHECK(max_error <= 1e-4);
  }
}

TEST_CASE("the same run gives the same losses at N ranks and at 1 rank", "[train]") {
  Communicator& comm = test::runtime().world();
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  LlamaModel initial(config);
  initial.init_weights(7);
  auto parameters = named_parameters(initial);

  auto run = [&](Communicator& world) {
    ShardedLlama model(config, world, torch::kCPU, torch::kFloat32, "matrices");
    model.load_full(parameters);
    LossScaler scaler(LossScalerConfig{});
    LrScheduleConfig schedule{"cosine", 3, 20, 2e-3, 2e-4};
    int64_t step = 0;
    std::vector<double> losses;
    torch::Generator generator = at::detail::createCPUGenerator(99);
    for (int s = 0; s < 20; ++s) {
      torch::Tensor ids = torch::randint(0, config.vocab_size, {6, 24}, generator, torch::kInt64);
      TrainBatch batch{ids, next_token_targets(ids)};
      losses.push_back(model.forward_backward(batch, 1, 1.0));
      optimizer_step(model.sharded(), AdamWConfig{}, lr_at(schedule, s), 1.0, scaler, step);
    }
    return losses;
  };

  std::vector<double> sharded = run(comm);
  if (comm.rank() == 0) {
    auto self = make_self_communicator();
    std::vector<double> single = run(*self);
    for (int s = 0; s < 20; ++s) {
      INFO("step " << s);
      CHECK(std::abs(sharded[s] - single[s]) <= 1e-5 * std::abs(single[s]));
    }
    CHECK(sharded.back() < sharded.front());  // it learns something
  }
  comm.barrier();
}

TEST_CASE("a first SIGINT is a stop request like SIGTERM, and a second one ends the process", "[train]") {
  if (test::runtime().world().size() != 1) return;  // fork() is for the single-process run only
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Exit codes say how far the child got: 10 = the first SIGINT was only recorded.
    StopSignals signals;
    if (signals.received() != 0) std::_Exit(1);
    ::raise(SIGINT);
    if (signals.received() != SIGINT) std::_Exit(2);
    ::raise(SIGTERM);  // a later signal does not replace the first
    if (signals.received() != SIGINT) std::_Exit(3);
    ::raise(SIGINT);   // the second Ctrl-C: the default action, now
    std::_Exit(10);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  INFO("exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGINT);

  // Outside a StopSignals' lifetime the default actions are back.
  { StopSignals scoped; }
  struct sigaction action {};
  sigaction(SIGINT, nullptr, &action);
  CHECK(action.sa_handler == SIG_DFL);
}
