// Training on the sharding engine, against references no one here wrote:
//   1. the Hugging Face AdamW trajectory of ../shared/fixtures/hf_tiny_llama32
//      (losses, pre-clip grad norms, final parameters), at 1, 2 and 3 ranks;
//   2. rank-count invariance: the same 20 steps at N ranks and at 1 rank give
//      the same losses to 1e-5 relative;
//   3. the stop signals: a first SIGINT is a stop request like SIGTERM, a
//      second one ends the process;
//   4. fp16 on the CPU, through the same mixed-precision code as CUDA: the
//      fixture's fp16 trajectory stays within 2e-2 of fp32 over 20 steps, an
//      overflow on one rank skips the step on every rank and lowers the scale,
//      and the bad-step rule at the minimum scale;
//   5. the host waits per optimizer step do not grow with layers or micro-steps;
//   6. recompute never, selective and always: the fixture's logits, loss and
//      every gradient (transformers); always's gradients bit-identical to
//      never's, selective's within 1e-6 in fp32 and bf16; the plan's choice;
//   7. communication overlapped with compute (train.overlap) and the serial
//      order: bit-identical losses, gradient shards and weights.
#include "torch_catch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "metareuse/core/config.h"  // train.loss_chunk_rows's default
#include "metareuse/core/error.h"
#include "metareuse/core/stop_signals.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/train/bad_steps.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/train/train_state.h"
#include "metareuse/train/trainer.h"  // improves_on: early stopping's rule
#include "metareuse/parallel/sharded_llama.h"
#include "fixture_training.h"
#include "sync_counter.h"
#include "tensor_compare.h"  // relative_error
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
  ShardedLlama model(source->config(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(named_parameters(reference));

  nlohmann::json expected;
  std::ifstream(fixture + "/train.json") >> expected;
  SafetensorsFile batches(fixture + "/train_batches.safetensors");
  AdamW optimizer(model.sharded(), AdamWConfig{3e-3, 0.9, 0.95, 1e-8, 0.1, "all"});
  LossScaler scaler(LossScalerConfig{});
  int64_t step = 0;
  for (int s = 0; s < 6; ++s) {
    torch::Tensor ids = batches.tensor("batch" + std::to_string(s));  // (4, 32)
    TrainBatch batch{ids, next_token_targets(ids)};
    // Micro-batches of one row: gradient accumulation is exercised at every rank count.
    double loss = model.forward_backward(batch, 1, 1.0);
    StepOutcome outcome = optimizer.step(3e-3, 1.0, scaler, step);
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
    ShardedLlama model(config, world, torch::kCPU, torch::kFloat32);
    model.load_full(parameters);
    AdamW optimizer(model.sharded(), AdamWConfig{});
    LossScaler scaler(LossScalerConfig{});
    LrScheduleConfig schedule{"cosine", 3, 20, 2e-3, 2e-4};
    int64_t step = 0;
    std::vector<double> losses;
    torch::Generator generator = at::detail::createCPUGenerator(99);
    for (int s = 0; s < 20; ++s) {
      torch::Tensor ids = torch::randint(0, config.vocab_size, {6, 24}, generator, torch::kInt64);
      TrainBatch batch{ids, next_token_targets(ids)};
      losses.push_back(model.forward_backward(batch, 1, 1.0));
      optimizer.step(lr_at(schedule, s), 1.0, scaler, step);
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

namespace {

// Every unit's full fp32 gradient, by unit (a collective).
std::vector<torch::Tensor> gathered_grads(ShardedLlama& model) {
  std::vector<torch::Tensor> out;
  for (std::size_t u = 0; u < model.sharded().size(); ++u) {
    ShardedUnit& unit = model.sharded().unit(u);
    out.push_back(unit.gather_shard(unit.grad()).narrow(0, 0, unit.numel()));
  }
  return out;
}

// Rows of (B, T) with the given documents one after another in each row
// (`rows[r]` lists document indices), the rest padding: ids, loss mask
// (0 on each document's first two tokens: its prompt), segments, positions.
TrainBatch batch_of(const std::vector<torch::Tensor>& documents, const std::vector<std::vector<int>>& rows, int64_t T) {
  const int64_t B = static_cast<int64_t>(rows.size());
  torch::Tensor ids = torch::zeros({B, T}, torch::kInt64), mask = torch::zeros({B, T}, torch::kUInt8);
  torch::Tensor segments = torch::full({B, T}, -1, torch::kInt64), positions = torch::zeros({B, T}, torch::kInt64);
  for (int64_t r = 0; r < B; ++r) {
    int64_t offset = 0;
    for (std::size_t d = 0; d < rows[r].size(); ++d) {
      const torch::Tensor& doc = documents[rows[r][d]];
      const int64_t n = doc.size(0);
      ids[r].narrow(0, offset, n).copy_(doc);
      mask[r].narrow(0, offset + 2, n - 2).fill_(1);
      segments[r].narrow(0, offset, n).fill_(static_cast<int64_t>(d));
      positions[r].narrow(0, offset, n).copy_(torch::arange(n, torch::kInt64));
      offset += n;
    }
  }
  return {ids, next_token_targets(ids, mask, segments), {positions, segments}};
}

}  // namespace

TEST_CASE("a packed batch gives the loss and every gradient of its documents run one by one", "[train][packing]") {
  Communicator& comm = test::runtime().world();
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  LlamaModel initial(config);
  initial.init_weights(11);
  auto parameters = named_parameters(initial);
  torch::Generator generator = at::detail::createCPUGenerator(5);
  std::vector<torch::Tensor> documents;
  for (int64_t n : {5, 9, 3, 12, 7, 6, 4}) {
    documents.push_back(torch::randint(0, config.vocab_size, {n}, generator, torch::kInt64));
  }
  const int64_t T = 20;
  // Three packed rows (17, 19 and 10 tokens), against each document in its own row.
  TrainBatch packed = batch_of(documents, {{0, 1, 2}, {3, 4}, {5, 6}}, T);
  TrainBatch separate = batch_of(documents, {{0}, {1}, {2}, {3}, {4}, {5}, {6}}, T);
  REQUIRE(packed.targets.ne(-100).sum().item<int64_t>() == separate.targets.ne(-100).sum().item<int64_t>());

  auto run = [&](Communicator& world, const TrainBatch& batch, int64_t micro_batch, bool recompute) {
    ShardedLlama model(config, world, torch::kCPU, torch::kFloat32);
    model.sharded().set_recompute(recompute);
    model.load_full(parameters);
    double loss = model.forward_backward(batch, micro_batch, 1.0);
    return std::make_pair(loss, gathered_grads(model));
  };
  for (bool recompute : {true, false}) {
    INFO("at " << comm.size() << " ranks, recompute " << recompute);
    auto [packed_loss, packed_grads] = run(comm, packed, 1, recompute);
    if (comm.rank() == 0) {
      auto self = make_self_communicator();
      // Micro-batches of 3 rows of different lengths: each is cut to its longest row.
      auto [loss, grads] = run(*self, separate, 3, true);
      CHECK(std::abs(packed_loss - loss) <= 1e-5 * std::abs(loss));
      for (std::size_t u = 0; u < grads.size(); ++u) {
        const double scale = grads[u].abs().max().item<double>();
        const double error = (packed_grads[u] - grads[u]).abs().max().item<double>() / scale;
        INFO("unit " << u << " gradient error " << error << " of " << scale);
        CHECK(scale > 0);
        CHECK(error <= 1e-5);
      }
    }
    comm.barrier();
  }
}

// Training's head and loss in row chunks (train.loss_chunk_rows) against the
// whole micro-batch at once: the loss and every unit's gradient within 1e-6
// (fp32 rounding is ~1e-7 per op), tied and untied, recompute on and off,
// chunk sizes that divide a micro-batch's rows (2 x 13 = 26) and that do not,
// with positions without a target (a loss mask) in the batch.
TEST_CASE("the chunked loss gives the unchunked loss and every gradient", "[train][loss]") {
  // The key's default is the engine's.
  CHECK(Config().get_int("train.loss_chunk_rows") == kLossChunkRowsDefault);
  Communicator& comm = test::runtime().world();
  for (bool tied : {true, false}) {
    LlamaConfig config = LlamaConfig::preset("debug-tiny");
    config.tie_word_embeddings = tied;
    LlamaModel initial(config);
    initial.init_weights(17);
    auto parameters = named_parameters(initial);
    torch::Generator generator = at::detail::createCPUGenerator(19);
    torch::Tensor ids = torch::randint(0, config.vocab_size, {5, 13}, generator, torch::kInt64);
    torch::Tensor mask = torch::ones({5, 13}, torch::kUInt8);
    mask.narrow(1, 0, 4).zero_();  // a prompt: no loss on its tokens
    const TrainBatch batch{ids, next_token_targets(ids, mask)};
    auto run = [&](int64_t chunk_rows, bool recompute) {
      ShardedLlama model(config, comm, torch::kCPU, torch::kFloat32);
      model.sharded().set_recompute(recompute);
      model.set_loss_chunk_rows(chunk_rows);
      model.load_full(parameters);
      const double loss = model.forward_backward(batch, 2, 1.0);
      return std::make_pair(loss, gathered_grads(model));
    };
    for (bool recompute : {true, false}) {
      const auto [whole_loss, whole_grads] = run(0, recompute);
      for (int64_t chunk_rows : {int64_t{1}, int64_t{5}, int64_t{13}, int64_t{26}, kLossChunkRowsDefault}) {
        INFO("tied " << tied << ", recompute " << recompute << ", chunks of " << chunk_rows << " rows at "
                     << comm.size() << " ranks");
        const auto [loss, grads] = run(chunk_rows, recompute);
        CHECK(std::abs(loss - whole_loss) <= 1e-6 * std::abs(whole_loss));
        for (std::size_t u = 0; u < grads.size(); ++u) {
          const double scale = whole_grads[u].abs().max().item<double>();
          const double error = (grads[u] - whole_grads[u]).abs().max().item<double>() / scale;
          INFO("unit " << u << " gradient error " << error << " of " << scale);
          CHECK(scale > 0);
          CHECK(error <= 1e-6);
        }
      }
    }
  }
  CHECK_THROWS_WITH(ShardedLlama(LlamaConfig::preset("debug-tiny"), comm, torch::kCPU, torch::kFloat32)
                        .set_loss_chunk_rows(-1),
                    Catch::Matchers::Contains("chunk rows must be >= 0"));
}

// Overlap changes only when each collective is waited for: gathers are copies,
// a started reduce-scatter sums as a blocking one, and each unit's blocks are
// added in the order they were started. So every bit must match. The
// embedding unit (4096 x 64 = 262144 elements) is large enough that Open MPI's
// blocking and non-blocking reduce-scatters would sum it in different orders
// at 3 ranks. Several micro-steps per step, since the first micro-step of a
// model runs in the serial order (the schedule learns the order from it).
TEST_CASE("overlap on and off give bit-identical losses, gradient shards and weights", "[train][overlap]") {
  Communicator& comm = test::runtime().world();
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  config.vocab_size = 4096;
  for (const bool tied : {true, false}) {
    for (const Recompute mode : {Recompute::kAlways, Recompute::kSelective, Recompute::kNever}) {
      const bool recompute = mode == Recompute::kAlways;  // units gathered again in backward
      for (const torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
        if (dtype == torch::kBFloat16 && !(tied && recompute)) continue;  // one mixed-precision case is enough
        config.tie_word_embeddings = tied;
        LlamaModel initial(config);
        initial.init_weights(13);
        const auto parameters = named_parameters(initial);
        torch::Generator generator = at::detail::createCPUGenerator(29);
        std::vector<TrainBatch> batches;
        for (int s = 0; s < 3; ++s) {
          torch::Tensor ids = torch::randint(0, config.vocab_size, {6, 12}, generator, torch::kInt64);  // (B, T)
          batches.push_back({ids, next_token_targets(ids), {}});
        }
        struct Run {
          std::vector<double> losses;
          std::vector<torch::Tensor> grads, masters;  // every step's shards, in unit order
          ShardedModel::OverlapCounts counts;
        };
        auto run = [&](bool overlap) {
          ShardedLlama model(config, comm, torch::kCPU, dtype);
          model.load_full(parameters);
          model.set_recompute(mode);
          model.sharded().set_overlap(overlap);
          AdamW optimizer(model.sharded(), AdamWConfig{});
          LossScaler scaler(LossScalerConfig{});
          int64_t adam_steps = 0;
          Run out;
          for (const TrainBatch& batch : batches) {
            out.losses.push_back(model.forward_backward(batch, /*micro_batch=*/1, 1.0));
            for (std::size_t u = 0; u < model.sharded().size(); ++u) {
              out.grads.push_back(model.sharded().unit(u).grad().clone());
            }
            optimizer.step(1e-3, 1.0, scaler, adam_steps);
            for (std::size_t u = 0; u < model.sharded().size(); ++u) {
              out.masters.push_back(model.sharded().unit(u).master().clone());
            }
          }
          out.counts = model.sharded().overlap_counts();
          return out;
        };
        const Run serial = run(false), overlapped = run(true);
        INFO(comm.size() << " ranks, tied " << tied << ", recompute " << recompute_name(mode) << ", "
                         << c10::toString(dtype) << ": " << overlapped.counts.prefetched << " gathers prefetched, "
                         << overlapped.counts.wasted << " wasted");
        CHECK(serial.counts.prefetched == 0);
        if (comm.size() > 1) {
          // Per micro-step, `calls` unit calls (embedding, layers, norm, head). The
          // model's first micro-step has no order to follow: only its backward's
          // gathers but the first are prefetched. Every later one prefetches
          // every forward gather but the first, and every recompute's gather.
          const int64_t n = comm.size(), rows = 6;
          const int64_t micro_steps = 3 * ((rows + n - 1) / n);
          const int64_t calls = config.num_hidden_layers + 3;
          const int64_t expected = recompute ? (calls - 1) + (micro_steps - 1) * (2 * calls - 1)
                                             : (micro_steps - 1) * (calls - 1);
          CHECK(overlapped.counts.prefetched == expected);
          CHECK(overlapped.counts.wasted == 0);
        } else {
          CHECK(overlapped.counts.prefetched == 0);  // one rank: nothing to overlap
        }
        REQUIRE(serial.losses.size() == overlapped.losses.size());
        for (std::size_t s = 0; s < serial.losses.size(); ++s) CHECK(serial.losses[s] == overlapped.losses[s]);
        REQUIRE(serial.grads.size() == overlapped.grads.size());
        for (std::size_t i = 0; i < serial.grads.size(); ++i) {
          INFO("gradient shard " << i);
          CHECK(torch::equal(serial.grads[i], overlapped.grads[i]));
        }
        for (std::size_t i = 0; i < serial.masters.size(); ++i) {
          INFO("weight shard " << i);
          CHECK(torch::equal(serial.masters[i], overlapped.masters[i]));
        }
      }
    }
  }
}

TEST_CASE("recompute never, selective and always give the same losses", "[train][recompute]") {
  Communicator& comm = test::runtime().world();
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  LlamaModel initial(config);
  initial.init_weights(3);
  auto parameters = named_parameters(initial);
  auto run = [&](Recompute recompute) {
    ShardedLlama model(config, comm, torch::kCPU, torch::kFloat32);
    model.set_recompute(recompute);
    model.load_full(parameters);
    AdamW optimizer(model.sharded(), AdamWConfig{});
    LossScaler scaler(LossScalerConfig{});
    int64_t step = 0;
    std::vector<double> losses;
    // One batch, trained on repeatedly: the loss must fall (memorisation).
    torch::Generator generator = at::detail::createCPUGenerator(21);
    torch::Tensor ids = torch::randint(0, config.vocab_size, {4, 16}, generator, torch::kInt64);
    for (int s = 0; s < 8; ++s) {
      losses.push_back(model.forward_backward(TrainBatch{ids, next_token_targets(ids)}, 2, 1.0));
      optimizer.step(2e-3, 1.0, scaler, step);
    }
    return losses;
  };
  std::vector<double> always = run(Recompute::kAlways), never = run(Recompute::kNever),
                      selective = run(Recompute::kSelective);
  for (int s = 0; s < 8; ++s) {
    INFO("step " << s << " at " << comm.size() << " ranks");
    CHECK(std::abs(always[s] - never[s]) <= 1e-5 * std::abs(always[s]));
    CHECK(std::abs(selective[s] - never[s]) <= 1e-5 * std::abs(never[s]));
  }
  CHECK(always.back() < always.front());
}

// The recompute is training's (ShardedLlama::set_recompute); with each mode,
// the sharded forward and backward replay transformers' logits, loss and
// every gradient of ../shared/fixtures/hf_tiny_llama32 (reference.safetensors,
// computed in float64 and stored as fp32), with test_model's tolerances:
// fp32 rounding is ~1e-7 relative per op, so 1e-5 on logits and loss and 1e-4
// on gradients leave a margin of 10-100x.
TEST_CASE("with recompute never, selective and always, logits, loss and every gradient match transformers",
          "[train][recompute]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  const std::string fixture = shared + "/fixtures/hf_tiny_llama32";
  Communicator& comm = test::runtime().world();
  auto source = open_model_source(fixture);
  auto parameters = named_parameters(load_model(*source));
  SafetensorsFile reference(fixture + "/reference.safetensors");
  torch::Tensor ids = reference.tensor("input_ids");  // (2, 24)
  const double reference_loss = reference.tensor("loss").item<double>();

  for (AttentionKind attention : {AttentionKind::kSdpa, AttentionKind::kEager}) {
    // The default chunk holds a micro-batch's 24 rows; chunks of 5 split it unevenly.
    for (const auto& [recompute, chunk_rows] :
         {std::pair{Recompute::kNever, kLossChunkRowsDefault}, std::pair{Recompute::kSelective, kLossChunkRowsDefault},
          std::pair{Recompute::kAlways, kLossChunkRowsDefault}, std::pair{Recompute::kAlways, int64_t{5}}}) {
      INFO("attention " << attention_name(attention) << ", recompute " << recompute_name(recompute)
                        << ", loss chunks of " << chunk_rows << " rows at " << comm.size() << " ranks");
      LlamaConfig config = source->config();
      config.attention = attention;
      ShardedLlama model(config, comm, torch::kCPU, torch::kFloat32);
      model.set_recompute(recompute);
      model.set_loss_chunk_rows(chunk_rows);
      model.load_full(parameters);
      const double logits_error = test::relative_error(model.logits(ids), reference.tensor("logits"));
      INFO("logits relative error " << logits_error);
      CHECK(logits_error <= 1e-5);
      const double loss = model.forward_backward(TrainBatch{ids, next_token_targets(ids)}, 1, 1.0);
      CHECK(std::abs(loss - reference_loss) <= 1e-5 * std::abs(reference_loss));

      std::map<std::string, torch::Tensor> gradients;
      std::size_t parameter_count = 0;
      for (std::size_t u = 0; u < model.sharded().size(); ++u) {
        ShardedUnit& unit = model.sharded().unit(u);
        for (auto& [name, view] : unit.views(unit.gather_shard(unit.grad()))) gradients.emplace(name, view);
        parameter_count += unit.layout().parameters.size();
      }
      std::size_t compared = 0;
      for (const auto& name : reference.names()) {
        if (name.rfind("grad.", 0) != 0) continue;
        const std::string parameter = name.substr(5);
        REQUIRE(gradients.count(parameter) == 1);
        const double error = test::relative_error(gradients.at(parameter), reference.tensor(name));
        INFO(parameter << " gradient relative error " << error);
        CHECK(error <= 1e-4);
        ++compared;
      }
      // Every parameter has a reference gradient (the tied embedding's includes the head's share).
      CHECK(compared == parameter_count);
    }
  }
}

TEST_CASE("recompute gives the same gradients as keeping the graph", "[train][recompute]") {
  Communicator& comm = test::runtime().world();
  for (bool tied : {true, false}) {
    INFO("tied " << tied << " at " << comm.size() << " ranks");
    LlamaConfig config = LlamaConfig::preset("debug-tiny");
    config.tie_word_embeddings = tied;
    LlamaModel initial(config);
    initial.init_weights(7);
    auto parameters = named_parameters(initial);
    torch::Generator generator = at::detail::createCPUGenerator(13);
    torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 12}, generator, torch::kInt64);
    std::vector<torch::Tensor> kept;
    for (bool recompute : {false, true}) {
      ShardedLlama model(config, comm, torch::kCPU, torch::kFloat32);
      model.sharded().set_recompute(recompute);
      model.load_full(parameters);
      model.forward_backward(TrainBatch{ids, next_token_targets(ids)}, 1, 1.0);
      std::vector<torch::Tensor> grads = gathered_grads(model);
      for (std::size_t u = 0; u < grads.size(); ++u) {
        if (!recompute) {
          kept.push_back(grads[u]);
        } else {
          // The recompute runs the same ops on the same inputs.
          CHECK(torch::equal(grads[u], kept[u]));
        }
      }
    }
  }
}

// Selective recompute (model/selective_recompute.h) runs the same ops as
// keeping the graph, but differentiates the projections by hand and sums the
// three projections' input gradients in its own order: fp32 rounding (~1e-7
// relative per op) bounds the difference, so 1e-6 leaves a 10x margin. In
// bf16 those sums round to 8 bits, so selective is held to keeping's own
// error against fp32 instead. Packed rows run attention with the document mask.
TEST_CASE("selective recompute gives keeping's loss and gradients, fp32 and bf16", "[train][recompute]") {
  Communicator& comm = test::runtime().world();
  for (bool tied : {true, false}) {
    LlamaConfig config = LlamaConfig::preset("debug-tiny");
    config.tie_word_embeddings = tied;
    LlamaModel initial(config);
    initial.init_weights(23);
    auto parameters = named_parameters(initial);
    torch::Generator generator = at::detail::createCPUGenerator(29);
    std::vector<torch::Tensor> documents;
    for (int64_t n : {5, 9, 3, 12, 7, 6}) {
      documents.push_back(torch::randint(0, config.vocab_size, {n}, generator, torch::kInt64));
    }
    const TrainBatch batch = batch_of(documents, {{0, 1, 2}, {3, 4}, {5}}, 20);
    auto run = [&](Recompute recompute, torch::ScalarType dtype) {
      ShardedLlama model(config, comm, torch::kCPU, dtype);
      model.set_recompute(recompute);
      model.load_full(parameters);
      const double loss = model.forward_backward(batch, 2, 1.0);
      return std::make_pair(loss, gathered_grads(model));
    };
    const auto [exact_loss, exact] = run(Recompute::kNever, torch::kFloat32);
    const auto [selective_loss, selective] = run(Recompute::kSelective, torch::kFloat32);
    const auto [kept_bf16_loss, kept_bf16] = run(Recompute::kNever, torch::kBFloat16);
    const auto [selective_bf16_loss, selective_bf16] = run(Recompute::kSelective, torch::kBFloat16);
    INFO("tied " << tied << " at " << comm.size() << " ranks");
    CHECK(std::abs(selective_loss - exact_loss) <= 1e-6 * std::abs(exact_loss));
    CHECK(std::abs(selective_bf16_loss - exact_loss) <= 1.5 * std::abs(kept_bf16_loss - exact_loss) + 1e-6);
    for (std::size_t u = 0; u < exact.size(); ++u) {
      const double scale = exact[u].abs().max().item<double>();
      const double error = (selective[u] - exact[u]).abs().max().item<double>() / scale;
      const double kept_bf16_error = (kept_bf16[u] - exact[u]).abs().max().item<double>() / scale;
      const double selective_bf16_error = (selective_bf16[u] - exact[u]).abs().max().item<double>() / scale;
      INFO("unit " << u << ": fp32 error " << error << " of " << scale << "; bf16 error kept " << kept_bf16_error
                   << ", selective " << selective_bf16_error);
      CHECK(scale > 0);
      CHECK(error <= 1e-6);
      CHECK(selective_bf16_error <= 1.5 * kept_bf16_error + 1e-6);
    }
  }
}

// train.recompute=auto takes the least recompute whose plan fits 90% of the
// device: never when keeping everything fits, else selective, else always.
TEST_CASE("recompute auto takes never, selective or always by the device's memory", "[train][recompute][plan]") {
  const LlamaConfig model = LlamaConfig::preset("llama3.2-1b");
  auto plan = [&](int64_t device_bytes, const std::string& recompute) {
    return plan_memory(model, 1, 4, 2048, "bf16", device_bytes, recompute, kLossChunkRowsDefault);
  };
  const MemoryPlan sizes = plan(0, "auto");
  CHECK(sizes.recompute == Recompute::kNever);  // no device memory given: nothing limits
  // The three totals, as plan_memory counts them for this shape.
  const int64_t kept = sizes.total_kept_bytes, selective = sizes.total_selective_bytes, always = sizes.total_bytes;
  INFO("kept " << kept << ", selective " << selective << ", always " << always);
  REQUIRE(always < selective);
  REQUIRE(selective < kept);
  CHECK(planned_total(sizes, Recompute::kNever) == kept);
  CHECK(planned_total(sizes, Recompute::kSelective) == selective);
  CHECK(planned_total(sizes, Recompute::kAlways) == always);
  // A device of `bytes` holds a total up to 90% of it.
  auto device_for = [](int64_t total) { return total * 10 / 9 + 16; };
  struct Case {
    int64_t device_bytes;
    Recompute expected;
    bool fits;
    const char* why;
  };
  for (const Case& c : {Case{device_for(kept), Recompute::kNever, true, "auto: keeping everything fits"},
                        Case{device_for(kept) - 64, Recompute::kSelective, true, "keeping matmul and attention outputs does"},
                        Case{device_for(selective), Recompute::kSelective, true, "keeping matmul and attention outputs does"},
                        Case{device_for(selective) - 64, Recompute::kAlways, true, "neither keeping everything nor"},
                        Case{device_for(always), Recompute::kAlways, true, "neither keeping everything nor"},
                        Case{device_for(always) - 64, Recompute::kAlways, false, "neither keeping everything nor"}}) {
    const MemoryPlan chosen = plan(c.device_bytes, "auto");
    INFO("device " << c.device_bytes << " bytes: " << recompute_name(chosen.recompute) << "\n" << format_plan(chosen));
    CHECK(chosen.recompute == c.expected);
    CHECK(chosen.fits == c.fits);
    // `plan` prints the choice and the reason.
    CHECK_THAT(format_plan(chosen), Catch::Matchers::Contains(std::string("recompute: ") +
                                                                recompute_name(c.expected) + " (train.recompute=auto; ") &&
                                        Catch::Matchers::Contains(c.why));
  }
  // Set explicitly, the mode is taken as given, fitting or not.
  CHECK(plan(device_for(always), "selective").recompute == Recompute::kSelective);
  CHECK_FALSE(plan(device_for(always), "selective").fits);
  CHECK(plan(device_for(kept), "always").recompute == Recompute::kAlways);
  CHECK_THAT(format_plan(plan(0, "selective")), Catch::Matchers::Contains("recompute: selective (train.recompute=selective; as set)"));
  CHECK_THROWS_WITH(plan(0, "sometimes"),
                    Catch::Matchers::Contains("train.recompute must be auto, always, selective or never, got 'sometimes'"));
}

TEST_CASE("TrainState round-trips the checkpoint metadata and names a missing key and a changed identity",
          "[train][checkpoint]") {
  TrainState state;
  state.identity.model = LlamaConfig::preset("debug-tiny").to_hf_json();
  state.identity.tokenizer = "sentencepiece:1000:abc";
  state.identity.sequences = 40;
  state.identity.sequence_length = 192;
  state.identity.patterns_hash = "f00d";
  state.step = 7;
  state.adam_steps = 6;
  state.epoch = 1;
  state.sampler = SamplerState{1234, 1, 3, 40, 1};
  state.loss_scale = 32768.0;
  state.loss_scale_good_steps = 5;
  state.loss_scale_hysteresis_left = 1;
  state.config = {{"train", {{"lr", 0.003}}}};
  nlohmann::json meta = state.to_json();
  CHECK(meta.at("dataset").at("tokenizer") == "sentencepiece:1000:abc");
  CHECK_FALSE(meta.contains("world_size"));  // save_checkpoint writes it, not the trainer
  meta["world_size"] = 2;
  TrainState back = TrainState::from_json(meta, "ckpt.h5");
  CHECK(back.to_json() == meta);
  CHECK(back.world_size == 2);
  CHECK(back.sampler.position == 3);
  CHECK_FALSE(meta.contains("validation"));  // no evaluation yet
  CHECK_FALSE(back.best_validation_loss.has_value());

  // Early stopping's standing, once evaluations have run.
  state.best_validation_loss = 2.5;
  state.evaluations_without_improvement = 2;
  const nlohmann::json evaluated = state.to_json();
  CHECK(evaluated.at("validation").at("best_loss") == 2.5);
  const TrainState evaluated_back = TrainState::from_json(evaluated, "ckpt.h5");
  CHECK(evaluated_back.best_validation_loss == 2.5);
  CHECK(evaluated_back.evaluations_without_improvement == 2);
  nlohmann::json no_count = evaluated;
  no_count["validation"].erase("evaluations_without_improvement");
  CHECK_THROWS_WITH(TrainState::from_json(no_count, "ckpt.h5"),
                    Catch::Matchers::Contains("'validation.evaluations_without_improvement'"));

  nlohmann::json broken = meta;
  broken["sampler"].erase("position");
  CHECK_THROWS_WITH(TrainState::from_json(broken, "ckpt.h5"),
                    Catch::Matchers::Contains("ckpt.h5") &&
                        Catch::Matchers::Contains("'sampler.position'"));
  broken = meta;
  broken["step"] = "seven";
  CHECK_THROWS_WITH(TrainState::from_json(broken, "ckpt.h5"), Catch::Matchers::Contains("'step'"));

  TrainIdentity other = state.identity;
  CHECK_NOTHROW(check_resume_identity(meta, other, "ckpt.h5"));
  other.sequence_length = 256;
  CHECK_THROWS_WITH(check_resume_identity(meta, other, "ckpt.h5"),
                    Catch::Matchers::Contains("dataset.sequence_length is 192 in the checkpoint but 256"));
}

TEST_CASE("early stopping counts an improvement only below the best less min_delta", "[train][validation]") {
  CHECK(improves_on(3.0, std::nullopt, 0.0));  // the first evaluation sets the best
  CHECK(improves_on(3.0, std::nullopt, 1e9));
  CHECK(improves_on(2.9, 3.0, 0.0));
  CHECK_FALSE(improves_on(3.0, 3.0, 0.0));      // equal is no improvement
  CHECK_FALSE(improves_on(2.95, 3.0, 0.1));     // below the best, but by less than min_delta
  CHECK(improves_on(2.85, 3.0, 0.1));
  CHECK_FALSE(improves_on(NAN, std::nullopt, 0.0));  // a non-finite loss never improves
  CHECK_FALSE(improves_on(INFINITY, 3.0, 0.0));
}

TEST_CASE("a resume may change how long training goes on but not the training itself", "[train]") {
  const nlohmann::json saved = {{"run", {{"name", "a"}}},
                                {"train", {{"lr", 0.003}, {"lr_schedule", "cosine"}, {"max_steps", 100},
                                           {"time_limit", 600.0}, {"resume", ""}}}};
  CHECK(check_resume_options(saved, saved, "ckpt.h5").empty());

  // Only train.* and run.seed are compared: another run name or checkpoint cadence is not the training.
  nlohmann::json longer = saved;
  longer["run"]["name"] = "b";
  longer["train"]["max_steps"] = 200;
  longer["train"]["time_limit"] = 0.0;
  longer["train"]["resume"] = "auto";
  const std::vector<std::string> changed = check_resume_options(saved, longer, "ckpt.h5");
  CHECK(changed == std::vector<std::string>{"train.max_steps changed 100 -> 200", "train.time_limit changed 600.0 -> 0.0"});

  nlohmann::json other = longer;
  other["train"]["lr"] = 0.001;
  other["train"]["lr_schedule"] = "linear";
  CHECK_THROWS_AS(check_resume_options(saved, other, "ckpt.h5"), ConfigError);
  CHECK_THROWS_WITH(check_resume_options(saved, other, "ckpt.h5"),
                    Catch::Matchers::Contains("ckpt.h5: cannot resume") &&
                        Catch::Matchers::Contains("train.lr is 0.003 in the checkpoint but 0.001 in this run") &&
                        Catch::Matchers::Contains("train.lr_schedule is \"cosine\" in the checkpoint but \"linear\"") &&
                        Catch::Matchers::Contains("--set run.name=NAME") &&
                        Catch::Matchers::Contains("may change only train.max_steps"));

  // run.seed made the initial weights and the data order: another seed is another training.
  nlohmann::json seeded = saved, reseeded = saved;
  seeded["run"]["seed"] = 1234;
  reseeded["run"]["seed"] = 7;
  CHECK_THROWS_WITH(check_resume_options(seeded, reseeded, "ckpt.h5"),
                    Catch::Matchers::Contains("run.seed is 1234 in the checkpoint but 7 in this run"));

  // A key the checkpoint's older build did not write is not compared.
  nlohmann::json newer = saved;
  newer["train"]["warmup_steps"] = 10;
  CHECK(check_resume_options(saved, newer, "ckpt.h5").empty());
}

TEST_CASE("an fp16 trajectory on the CPU stays within 2e-2 of fp32 over 20 steps", "[train][fp16]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  const std::string fixture = shared + "/fixtures/hf_tiny_llama32";
  Communicator& comm = test::runtime().world();
  test::Trajectory fp32 = test::train_fixture(fixture, comm, torch::kCPU, torch::kFloat32, 20);
  test::Trajectory fp16 = test::train_fixture(fixture, comm, torch::kCPU, torch::kFloat16, 20);
  CHECK(fp16.skipped == 0);
  for (int s = 0; s < 20; ++s) {
    INFO("step " << s << " at " << comm.size() << " ranks: fp32 " << fp32.losses[s] << ", fp16 " << fp16.losses[s]);
    // fp16 keeps about 3 decimal digits per matmul; the fp32 master weights and
    // fp32 residual stream keep the trajectory within 2% of fp32's.
    CHECK(std::abs(fp16.losses[s] - fp32.losses[s]) <= 2e-2 * std::abs(fp32.losses[s]));
  }
  CHECK(fp16.losses.back() < fp16.losses.front());  // it learns
}

TEST_CASE("an fp16 overflow on one rank skips the step on every rank and lowers the scale", "[train][fp16]") {
  Communicator& comm = test::runtime().world();
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  LlamaModel initial(config);
  initial.init_weights(5);
  ShardedLlama model(config, comm, torch::kCPU, torch::kFloat16);
  model.load_full(test::parameters_of(initial));
  AdamW optimizer(model.sharded(), AdamWConfig{});
  LossScalerConfig scaling;
  scaling.enabled = true;
  scaling.initial_scale = 256.0;
  LossScaler scaler(scaling);
  torch::Generator generator = at::detail::createCPUGenerator(17);
  torch::Tensor ids = torch::randint(0, config.vocab_size, {4, 16}, generator, torch::kInt64);
  const TrainBatch batch{ids, next_token_targets(ids)};
  int64_t adam_steps = 0;

  const auto before = model.sharded().gather_full();
  model.forward_backward(batch, 1, scaler.scale());
  // The last rank's gradient shard overflows; the others are finite.
  if (comm.rank() == comm.size() - 1) model.sharded().unit(1).grad()[0] = std::numeric_limits<float>::infinity();
  StepOutcome outcome = optimizer.step(1e-3, 1.0, scaler, adam_steps);
  const std::vector<int32_t> skipped = comm.allgather_value<int32_t>(outcome.skipped ? 1 : 0);
  for (int r = 0; r < comm.size(); ++r) {
    INFO("rank " << r << " of " << comm.size());
    CHECK(skipped[static_cast<std::size_t>(r)] == 1);
  }
  CHECK(outcome.loss_scale == 256.0);
  CHECK(scaler.scale() == 128.0);  // halved (hysteresis 1)
  CHECK(adam_steps == 0);
  for (const auto& [name, value] : model.sharded().gather_full()) {
    INFO(name);
    CHECK(torch::equal(value, before.at(name)));  // no update
  }
  // The next step, with nothing injected, trains at the lowered scale.
  model.forward_backward(batch, 1, scaler.scale());
  outcome = optimizer.step(1e-3, 1.0, scaler, adam_steps);
  CHECK_FALSE(outcome.skipped);
  CHECK(outcome.loss_scale == 128.0);
  CHECK(adam_steps == 1);
}

TEST_CASE("fp16 overflows stop training only at the minimum loss scale", "[train][fp16]") {
  Communicator& comm = test::runtime().world();
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  ShardedLlama llama(config, comm, torch::kCPU, torch::kFloat16);
  ShardedModel& model = llama.sharded();
  LossScalerConfig scaling;
  scaling.enabled = true;
  scaling.min_scale = 4.0;
  BadStepGuard guard(2, scaling);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto skipped_at = [](double scale) {
    StepOutcome outcome;
    outcome.skipped = true;
    outcome.loss_scale = scale;
    return outcome;
  };
  StepOutcome good;
  good.loss_scale = 16.0;
  CHECK_FALSE(guard.after_step(1, 2.5, good, model).stop);
  // Above the minimum: the scaler's business, however many in a row.
  for (int64_t step = 2; step <= 6; ++step) CHECK_FALSE(guard.after_step(step, nan, skipped_at(16.0), model).stop);
  // At the minimum, max_bad_steps (2) in a row stop; the weights are those of step 1.
  CHECK_FALSE(guard.after_step(7, nan, skipped_at(4.0), model).stop);
  const BadStepVerdict verdict = guard.after_step(8, nan, skipped_at(4.0), model);
  CHECK(verdict.stop);
  CHECK(verdict.parameters_finite);
  CHECK(verdict.last_good_step == 1);
  CHECK_THAT(verdict.message, Catch::Contains("training stopped at step 8") &&
                                  Catch::Contains("train.loss_scale_min") && Catch::Contains("since step 7"));
}

TEST_CASE("host waits per optimizer step do not grow with layers or micro-steps", "[train][syncs]") {
  Communicator& comm = test::runtime().world();
  auto waits_per_step = [&](int64_t layers, int64_t micro_batch, torch::ScalarType dtype) {
    LlamaConfig config = LlamaConfig::preset("debug-tiny");
    config.num_hidden_layers = layers;
    LlamaModel initial(config);
    initial.init_weights(11);
    ShardedLlama model(config, comm, torch::kCPU, dtype);
    model.load_full(test::parameters_of(initial));
    AdamW optimizer(model.sharded(), AdamWConfig{});
    LossScalerConfig scaling;
    scaling.enabled = dtype == torch::kFloat16;
    scaling.initial_scale = 256.0;
    LossScaler scaler(scaling);
    torch::Generator generator = at::detail::createCPUGenerator(23);
    torch::Tensor ids = torch::randint(0, config.vocab_size, {6, 12}, generator, torch::kInt64);
    const TrainBatch batch{ids, next_token_targets(ids)};
    int64_t adam_steps = 0;
    // One step to warm up (first-call initialisation is not the steady state).
    model.forward_backward(batch, micro_batch, scaler.scale());
    optimizer.step(1e-3, 1.0, scaler, adam_steps);
    test::SyncCounter counter;
    model.forward_backward(batch, micro_batch, scaler.scale());
    optimizer.step(1e-3, 1.0, scaler, adam_steps);
    return counter.count();
  };
  // 6 rows over N ranks in micro-batches of 1 or 3: 1-6 micro-steps per rank.
  const long base = waits_per_step(1, 3, torch::kFloat32);
  INFO("at " << comm.size() << " ranks, 1 layer, micro-batch 3: " << base << " host waits");
  // The loss (one read after all micro-steps) and the gradient norm (one read for all units).
  CHECK(base <= 2);
  CHECK(waits_per_step(4, 3, torch::kFloat32) == base);
  CHECK(waits_per_step(1, 1, torch::kFloat32) == base);
  CHECK(waits_per_step(4, 1, torch::kFloat16) == base);
}
