#include "metareuse/train/trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>   // the epoch time, against the Slurm job's end
#include <cmath>    // NAN, std::isfinite: the validation loss
#include <cstdio>   // the progress bar
#include <cstring>  // std::memcpy
#include <optional>
#include <string>

#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"  // AppendFile: metrics.jsonl
#include "metareuse/core/log.h"
#include "metareuse/core/stop_signals.h"
#include "metareuse/core/timing.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/dataset/sampler.h"
#include "metareuse/model/cuda_support.h"
#include "metareuse/model/source.h"
#include "metareuse/tokenizer/prompt_format.h"
#include "metareuse/train/bad_steps.h"
#include "metareuse/train/metrics.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/train/train_state.h"
#include "metareuse/parallel/sharded_llama.h"

namespace metareuse {
using json = nlohmann::json;

torch::ScalarType compute_dtype(const std::string& precision) {
  if (precision == "fp16") return torch::kFloat16;
  if (precision == "bf16") return torch::kBFloat16;
  return torch::kFloat32;
}

namespace {

// train.device: auto picks CUDA when libtorch sees a GPU; each rank takes GPU
// local_rank mod the node's GPU count, so ranks on one node spread over its GPUs.
torch::Device training_device(const std::string& choice, int local_rank) {
  const bool cuda = torch::cuda::is_available();
  if (choice == "cpu" || (choice == "auto" && !cuda)) return torch::Device(torch::kCPU);
  if (!cuda) {
    throw ConfigError("train.device=cuda but libtorch sees no CUDA device (a CPU-only libtorch, or no GPU visible)");
  }
  const int64_t devices = static_cast<int64_t>(torch::cuda::device_count());
  const auto index = static_cast<c10::DeviceIndex>(local_rank % devices);
  // Current from here on, before any other CUDA work of this rank (cuda_support.h).
  use_cuda_device(index);
  return torch::Device(torch::kCUDA, index);
}

// The B sequences of the next optimizer step, in the global order (every rank
// draws the same; ShardedLlama takes this rank's rows). Crosses into the next
// epoch when one ends.
TrainBatch next_global_batch(DistributedSampler& order, const PackedDataset& data, int64_t rows) {
  std::vector<int64_t> sequences;
  for (int64_t r = 0; r < rows; ++r) {
    std::optional<int64_t> index = order.next();
    if (!index) {
      order.set_epoch(order.epoch() + 1);
      index = order.next();
    }
    sequences.push_back(*index);
  }
  return train_batch_of(data, sequences);
}

std::string progress_bar(int64_t done, int64_t total, double eta_seconds) {
  const int width = 30;
  int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  return fmt::format("[{}{}] {}/{} ETA {:.0f}s", std::string(filled, '#'), std::string(width - filled, '.'), done,
                     total, eta_seconds);
}


// model.path's weights, their names and shapes checked against the config
// before anything the config sizes is allocated (a config.json that claims a
// larger model than its files is an error naming the tensor, not a failed
// terabyte allocation). Null for a from-scratch model.
std::unique_ptr<ModelSource> checked_model_source(const TrainOptions& options) {
  if (options.model_path.empty()) return nullptr;
  std::unique_ptr<ModelSource> source = open_model_source(options.model_path);
  source->check_tensors();
  return source;
}

// The weights training starts from: model.path's, read one unit at a time (a
// rank never holds the whole model unsharded), or a fresh initialisation from run.seed.
void load_initial_weights(const TrainOptions& options, const ModelSource* source, ShardedLlama& model) {
  ShardedModel& sharded = model.sharded();
  if (source != nullptr) {
    for (std::size_t u = 0; u < sharded.size(); ++u) {
      const UnitLayout& layout = sharded.unit(u).layout();
      const torch::Tensor flat = source->read_unit(layout, torch::kFloat32);  // (numel,)
      std::map<std::string, torch::Tensor> parameters;
      const std::vector<torch::Tensor> views = unit_views(layout, flat);
      for (std::size_t i = 0; i < views.size(); ++i) parameters.emplace(layout.parameters[i].name, views[i]);
      sharded.unit(u).load_full(parameters);
    }
    return;
  }
  LlamaModel full(options.model);
  full.init_weights(options.seed);
  std::map<std::string, torch::Tensor> parameters;
  for (const auto& [name, value] : full.named_parameters()) parameters.emplace(name, value.detach());
  model.load_full(parameters);
}

TrainIdentity identity_of(const LlamaConfig& model, const PackedDataset& data) {
  TrainIdentity identity;
  identity.model = model.to_hf_json();
  identity.tokenizer = data.metadata.tokenizer_identity();
  identity.sequences = data.sequences;
  identity.sequence_length = data.metadata.sequence_length;
  identity.patterns_hash = data.metadata.patterns_hash;
  return identity;
}

// train.resume: restores the weights, the moments, the data order, the loss
// scaler, this rank's generator and `state`'s counters from a checkpoint of
// the same identity. Leaves everything as it is when there is none to resume.
void resume_training(const TrainOptions& options, Communicator& comm, TrainState& state, ShardedLlama& model,
                     AdamW& optimizer, DistributedSampler& order, LossScaler& scaler) {
  if (options.resume.empty()) return;
  std::string path = resolve_checkpoint(options.resume, options.checkpoints.dir);
  if (path.empty()) {
    log_info("resume auto: no checkpoint in {}, starting fresh", options.checkpoints.dir);
    return;
  }
  json meta = read_checkpoint_meta(path);
  check_resume_identity(meta, state.identity, path);
  const TrainState saved = TrainState::from_json(meta, path);
  const std::vector<std::string> changed = check_resume_options(saved.config, state.config, path);
  for (const std::string& change : changed) log_info("resuming with {}", change);
  std::vector<uint8_t> rng;
  load_checkpoint(path, model.sharded(), optimizer.state(), &rng);
  state.step = saved.step;
  state.adam_steps = saved.adam_steps;
  state.best_validation_loss = saved.best_validation_loss;
  state.evaluations_without_improvement = saved.evaluations_without_improvement;
  scaler.set_state({saved.loss_scale, saved.loss_scale_good_steps, saved.loss_scale_hysteresis_left});
  order.restore(saved.sampler);
  if (!rng.empty()) {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(torch::from_blob(rng.data(), {static_cast<int64_t>(rng.size())}, torch::kUInt8).clone());
  }
  log_info("resumed from {} at step {} (saved at {} ranks, now {})", path, state.step, saved.world_size, comm.size());
}

// Collective: every rank saves its shards and rank 0 writes the file (see checkpoint.h).
SaveResult save_training(ShardedLlama& model, const AdamW& optimizer, TrainState& state, const DistributedSampler& order,
                         const LossScaler& scaler, const CheckpointOptions& checkpoints, const char* why) {
  state.epoch = order.epoch();
  state.sampler = order.state();
  state.loss_scale = scaler.state().scale;
  state.loss_scale_good_steps = scaler.state().good_steps;
  state.loss_scale_hysteresis_left = scaler.state().hysteresis_left;
  torch::Tensor generator = at::detail::getDefaultCPUGenerator().get_state();
  std::vector<uint8_t> rng(generator.data_ptr<uint8_t>(), generator.data_ptr<uint8_t>() + generator.numel());
  SaveResult result = save_checkpoint(model.sharded(), optimizer.state(), state.to_json(), rng, checkpoints);
  if (result.ok) {
    log_info("checkpoint ({}) step {} -> {} in {:.2f} s", why, state.step, result.path, result.seconds);
  } else {
    log_warn("checkpoint ({}) at step {} FAILED, training goes on and the last good checkpoint is kept: {}", why,
              state.step, result.message);
  }
  return result;
}

// Rank 0's account of each step: a metrics.jsonl line, and the progress bar
// (a terminal) or a log line every train.log_every steps.
class StepReporter {
 public:
  StepReporter(const TrainOptions& options, bool leader, const std::string& metrics_path, bool fresh,
               int64_t total_steps, double slots_per_step)
      : leader_(leader),
        tty_(leader && (options.progress == "bar" || (options.progress == "auto" && isatty(STDERR_FILENO)))),
        log_every_(options.log_every),
        total_steps_(total_steps),
        slots_per_step_(slots_per_step) {
    if (leader_) metrics_.open(metrics_path, fresh);  // every line checked: a full disk stops training, file named
  }
  // Ends the progress bar's line, before the final checkpoint's log lines.
  void finish() {
    if (tty_) std::fprintf(stderr, "\n");
  }

  // An evaluation: its metrics.jsonl line and a log line (on its own line
  // below the progress bar).
  void report_validation(const ValidationLine& line) {
    if (!leader_) return;
    metrics_.write(line.to_json().dump() + "\n");
    if (tty_) std::fprintf(stderr, "\n");
    log_info("step {} validation loss {:.4f} over {} tokens (best {:.4f}; {} evaluation(s) without improvement) in "
             "{:.2f} s",
             line.step, line.val_loss, line.val_tokens, line.best_val_loss, line.evaluations_without_improvement,
             line.seconds);
  }

  void report(int64_t step, int64_t epoch, double loss, double lr, const StepOutcome& outcome, double useful_tokens,
              double seconds, double eta, const CollectiveTraffic& traffic) {
    if (!leader_) return;
    MetricsLine line;
    line.step = step;
    line.epoch = epoch;
    line.loss = loss;
    line.lr = lr;
    if (!outcome.skipped) line.grad_norm = outcome.grad_norm;
    line.loss_scale = outcome.loss_scale;
    line.skipped = outcome.skipped;
    line.tokens_per_s = slots_per_step_ / seconds;
    line.useful_tokens_per_s = useful_tokens / seconds;
    line.padding_fraction = 1.0 - useful_tokens / slots_per_step_;
    line.seconds = seconds;
    line.traffic = traffic;
    metrics_.write(line.to_json().dump() + "\n");
    if (tty_) {
      std::fprintf(stderr, "\r%s loss %.4f lr %.2e %.0f useful tok/s (%.0f raw)   ",
                   progress_bar(step, total_steps_, eta).c_str(), loss, lr, line.useful_tokens_per_s,
                   line.tokens_per_s);
      std::fflush(stderr);
    } else if (step % log_every_ == 0 || step == total_steps_) {
      log_info("step {}/{} epoch {} loss {:.4f} lr {:.3e} grad_norm {:.3f}{} {:.0f} useful tok/s ({:.0f} raw) ETA "
                "{:.0f}s",
                step, total_steps_, epoch, loss, lr, outcome.grad_norm, outcome.skipped ? " (skipped)" : "",
                line.useful_tokens_per_s, line.tokens_per_s, eta);
    }
  }

 private:
  bool leader_;
  bool tty_;
  int64_t log_every_;
  int64_t total_steps_;
  double slots_per_step_;
  AppendFile metrics_;
};

}  // namespace

TrainBatch train_batch_of(const PackedDataset& data, const std::vector<int64_t>& sequences) {
  const int64_t rows = static_cast<int64_t>(sequences.size());
  const int64_t T = data.metadata.sequence_length;
  torch::Tensor ids = torch::empty({rows, T}, torch::kInt64);        // (B, T)
  torch::Tensor mask = torch::empty({rows, T}, torch::kUInt8);       // (B, T)
  torch::Tensor segments = torch::empty({rows, T}, torch::kInt64);   // (B, T)
  torch::Tensor positions = torch::empty({rows, T}, torch::kInt64);  // (B, T)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t index = sequences[static_cast<std::size_t>(r)];
    MR_CHECK(index >= 0 && index < data.sequences, "sequence {} is outside the dataset's {}", index, data.sequences);
    const TokenId* tokens = data.row(data.tokens, index);
    const int32_t* segment = data.row(data.segment_ids, index);
    const int32_t* position = data.row(data.positions, index);
    int64_t* ids_row = ids.data_ptr<int64_t>() + r * T;
    int64_t* segments_row = segments.data_ptr<int64_t>() + r * T;
    int64_t* positions_row = positions.data_ptr<int64_t>() + r * T;
    for (int64_t t = 0; t < T; ++t) {
      ids_row[t] = tokens[t];
      segments_row[t] = segment[t];
      positions_row[t] = position[t];
    }
    std::memcpy(mask.data_ptr<uint8_t>() + r * T, data.row(data.loss_mask, index), static_cast<std::size_t>(T));
  }
  return {ids, next_token_targets(ids, mask, segments), {positions, segments}};
}

MemoryPlan validate_training(const TrainOptions& options, const std::string& device_type, std::int64_t sequence_length,
                             int world_size) {
  if (options.micro_batch > options.global_batch) {
    throw ConfigError(fmt::format("train.micro_batch {} is larger than train.global_batch {}: a micro batch is part of "
                                  "one rank's share of the global batch; lower train.micro_batch",
                                  options.micro_batch, options.global_batch));
  }
  if (options.precision == "fp16" && device_type != "cuda") {
    // libtorch 2.x runs fp16 matmuls on CPU, through the same code as CUDA, but
    // without fp16 units they run at about 1 GFLOP/s: right for tests, not for work.
    log_warn("train.precision=fp16 on the CPU: the same mixed-precision path as on a GPU, but fp16 matmuls are "
             "slow on most CPUs (use fp32 or bf16 for real CPU training)");
  }
  MemoryPlan memory = plan_memory(options.model, world_size, options.micro_batch, sequence_length, options.precision,
                                  options.device_bytes, options.recompute, options.loss_chunk_rows, options.overlap);
  if (!memory.fits) {
    throw ConfigError(fmt::format("the plan does not fit in {} per rank:\n{}Lower train.micro_batch, use more ranks, "
                                  "or a shorter sequence length",
                                  format_bytes(memory.device_bytes), format_plan(memory)));
  }
  return memory;
}

namespace {

// What the ranks decide together before each step.
struct StepVote {
  bool stop = false;        // the time budget is spent, or some rank got a stop signal
  bool checkpoint = false;  // train.checkpoint_every_minutes has passed on some rank
  int signal = 0;           // the stop signal, named on every rank (0: none)
};

// How long training may run, from its start, and why: train.time_limit, or
// the Slurm job's end less train.job_end_margin, whichever comes first.
struct TimeBudget {
  std::optional<double> seconds;  // none: no limit
  std::string reason;             // for the log and the stop message
};

TimeBudget time_budget(const TrainOptions& options, double now_epoch_seconds) {
  TimeBudget budget;
  if (options.time_limit > 0) {
    budget.seconds = options.time_limit;
    budget.reason = fmt::format("train.time_limit {:.0f} s", options.time_limit);
  }
  if (options.job_end > 0) {
    const double left = std::max(0.0, options.job_end - options.job_end_margin - now_epoch_seconds);
    if (!budget.seconds || left < *budget.seconds) {
      budget.seconds = left;
      budget.reason = fmt::format("the Slurm job ends in {:.0f} s (SLURM_JOB_END_TIME), less train.job_end_margin "
                                  "{:.0f} s",
                                  options.job_end - now_epoch_seconds, options.job_end_margin);
    }
  }
  return budget;
}

// Every rank votes; one allreduce(MAX) makes the decision collective, so all
// ranks stop (or checkpoint) at the same step. `finish_seconds` is when this
// rank would be done with one more step and the final checkpoint.
StepVote vote_before_step(Communicator& comm, const TrainOptions& options, const TimeBudget& budget,
                          const StopSignals& stop_signals, double finish_seconds, double seconds_since_checkpoint) {
  // {stop, checkpoint now, the signal number}: the signal travels with the
  // vote so that every rank names it, not only the rank that got it.
  double votes[3] = {0.0, 0.0, static_cast<double>(stop_signals.received())};
  if (budget.seconds && finish_seconds > *budget.seconds) votes[0] = 1.0;
  if (stop_signals.received() != 0) votes[0] = 1.0;
  if (options.checkpoint_every_minutes > 0 && seconds_since_checkpoint >= options.checkpoint_every_minutes * 60.0) {
    votes[1] = 1.0;
  }
  comm.allreduce(votes, 3, DType::kFloat64, ReduceOp::kMax);
  return StepVote{votes[0] > 0, votes[1] > 0, static_cast<int>(votes[2])};
}

// The mean token loss over every validation sequence, in file order, a
// global batch of rows at a time (each rank runs its rows of it, in
// micro-batches, as in training: the memory plan covers it).
ShardedLlama::LossSum validation_loss(ShardedLlama& model, const PackedDataset& validation,
                                      const TrainOptions& options) {
  ShardedLlama::LossSum total;
  for (int64_t first = 0; first < validation.sequences; first += options.global_batch) {
    std::vector<int64_t> sequences;
    for (int64_t index = first; index < std::min(validation.sequences, first + options.global_batch); ++index) {
      sequences.push_back(index);
    }
    const ShardedLlama::LossSum part = model.loss_sum(train_batch_of(validation, sequences), options.micro_batch);
    total.loss += part.loss;
    total.tokens += part.tokens;
  }
  return total;
}

}  // namespace

void check_evaluation_options(const TrainOptions& options, std::int64_t validation_sequences,
                              const std::string& dataset) {
  if (options.early_stop_patience > 0 && options.eval_every == 0) {
    throw ConfigError(fmt::format("train.early_stop_patience {} needs evaluations: set train.eval_every (steps "
                                  "between validation losses), or train.early_stop_patience=0",
                                  options.early_stop_patience));
  }
  if (options.eval_every > 0 && validation_sequences == 0) {
    throw ConfigError(fmt::format("train.eval_every {} evaluates on validation sequences, but {} holds none: set "
                                  "dataset.validation_share (e.g. 0.05) and prepare the dataset again, or set "
                                  "train.eval_every=0",
                                  options.eval_every, dataset));
  }
}

bool improves_on(double loss, const std::optional<double>& best, double min_delta) {
  if (!std::isfinite(loss)) return false;
  return !best || loss < *best - min_delta;
}

int run_training(const TrainOptions& options, Runtime& runtime) {
  Stopwatch wall;
  const TimeBudget budget = time_budget(
      options, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  if (budget.seconds) {
    log_info("time budget {:.0f} s: {}; then a checkpoint and exit 3", *budget.seconds, budget.reason);
  } else {
    log_info("time budget: none (train.time_limit 0, no Slurm job end)");
  }
  // From the start: a preemption signal during loading still ends in a clean stop.
  StopSignals stop_signals;  // SIGTERM, SIGUSR1, a first Ctrl-C: stop at the next step
  Communicator& comm = runtime.world();

  // --- what to train, checked before anything large is allocated
  const torch::Device device = training_device(options.device, runtime.layout().local_rank);
  // Before anything is allocated: a GPU this libtorch has no kernels for (a P100
  // under a cu128+ build) fails here with the build to use, not at its first kernel.
  if (device.is_cuda()) check_gpu_supported(device.index(), options.precision == "bf16");
  DatasetExpectations expectations;
  expectations.model_vocab_size = options.model.vocab_size;
  DatasetFile dataset_file = load_dataset_file(options.dataset_path, expectations);
  const PackedDataset& data = dataset_file.training;
  const std::optional<PackedDataset>& validation = dataset_file.validation;
  check_evaluation_options(options, validation ? validation->sequences : 0, options.dataset_path);
  const bool packed = std::any_of(data.segment_ids.begin(), data.segment_ids.end(), [](int32_t s) { return s > 0; });
  const int64_t T = data.metadata.sequence_length;
  const MemoryPlan memory = validate_training(options, device.is_cuda() ? "cuda" : "cpu", T, comm.size());
  log_info("dataset {}: {} sequences of {} tokens ({}; tokenizer {})", options.dataset_path, data.sequences, T,
            packed ? "packed: documents masked apart" : "one document per sequence, padded per micro-batch",
            data.metadata.tokenizer_identity());
  if (validation) {
    log_info("validation set: {} sequences, {} documents held out (dataset.validation_share {}); {}",
             validation->sequences, validation->metadata.documents, data.metadata.validation_share,
             options.eval_every > 0
                 ? fmt::format("its loss every {} steps and at the end (train.eval_every){}", options.eval_every,
                               options.early_stop_patience > 0
                                   ? fmt::format(", early stopping after {} evaluation(s) without an improvement "
                                                 "above {} (train.early_stop_patience, train.early_stop_min_delta)",
                                                 options.early_stop_patience, options.early_stop_min_delta)
                                   : std::string())
                 : std::string("not evaluated (train.eval_every 0)"));
  }
  EpochPlan epochs =
      plan_epochs(data.sequences, options.global_batch, options.epoch_policy, options.epochs, options.max_steps);
  log_info("plan: {} examples, {} epoch(s) x {} steps/epoch -> {} steps ({})", epochs.examples, epochs.epochs,
            epochs.steps_per_epoch, epochs.total_steps, epochs.reason);

  // --- the sharded model, its optimizer state and the data order
  log_info("training on {}", device.str());
  const std::unique_ptr<ModelSource> source = checked_model_source(options);
  ShardedLlama model(options.model, comm, device, compute_dtype(options.precision));
  model.set_recompute(memory.recompute);
  model.sharded().set_overlap(options.overlap);
  model.set_loss_chunk_rows(options.loss_chunk_rows);
  log_info("recompute in backward: {} (train.recompute={})", recompute_name(memory.recompute),
            memory.recompute_choice);
  load_initial_weights(options, source.get(), model);
  AdamW optimizer(model.sharded(), options.adamw);
  const int64_t persistent = model.sharded().persistent_bytes() + optimizer.persistent_bytes();
  log_info("model: {} parameters, {} units; {} per rank persistent", parameter_count(options.model),
            model.sharded().size(), format_bytes(static_cast<double>(persistent)));
  const LrScheduleConfig schedule{options.lr_schedule, options.warmup_steps, epochs.total_steps, options.adamw.lr,
                                  options.lr_min};
  LossScaler scaler(options.loss_scaling);
  BadStepGuard bad_steps(options.max_bad_steps, options.loss_scaling);
  // One global order on every rank: each step every rank draws the same global
  // batch and ShardedLlama takes its own rows of it, so the batches do not depend
  // on the rank count (sampler.h).
  DistributedSampler order = DistributedSampler::global_order(data.sequences, options.seed);
  TrainState state;
  state.identity = identity_of(options.model, data);
  state.config = options.resolved_config.tree();
  // The tokenizer and the template the dataset was made with: eval's and
  // export's default for this checkpoint. The tokenizer is tokenizer.path, else
  // the one the dataset's own config names (`prepare --tokenizer`).
  TextFormat text{options.tokenizer_path, data.metadata.template_name};
  if (text.tokenizer.empty()) {
    const json made_with = json::parse(data.metadata.config_json, nullptr, /*allow_exceptions=*/false);
    if (made_with.is_object() && made_with.contains("tokenizer") && made_with["tokenizer"].is_object()) {
      text.tokenizer = made_with["tokenizer"].value("path", "");
    }
  }
  state.text = text.to_json();
  resume_training(options, comm, state, model, optimizer, order, scaler);
  if (state.step > epochs.total_steps) {
    log_warn("the checkpoint is at step {}, past this plan's {} steps: nothing is trained, and the model stays that "
             "of step {}", state.step, epochs.total_steps, state.step);
  }
  // Every check has passed: from here on this is the config the run trains with.
  if (comm.rank() == 0 && !options.config_path.empty()) options.resolved_config.write(options.config_path);

  const double slots_per_step = static_cast<double>(options.global_batch * T);
  StepReporter reporter(options, comm.rank() == 0, options.metrics_path, state.step == 0,
                        epochs.total_steps, slots_per_step);
  double step_seconds = 0.0;        // running estimate of one step
  double checkpoint_seconds = 0.0;  // measured cost of the last checkpoint
  double evaluation_seconds = 0.0;  // measured cost of the last evaluation
  Stopwatch since_checkpoint;
  bool stopped = false;
  const int64_t first_step = state.step;
  int64_t evaluated_step = -1;
  // Early stopping's count against train.early_stop_patience: a resumed run
  // goes on counting where its checkpoint left off.
  auto patience_spent = [&]() {
    return options.early_stop_patience > 0 && state.evaluations_without_improvement >= options.early_stop_patience;
  };
  // The validation loss after this step, its line, and early stopping's
  // standing. Every rank computes the same figures from all-reduced sums; the
  // verdict is all-reduced too, so every rank stops at the same step.
  auto evaluate = [&]() -> bool {
    set_progress_label(fmt::format("the validation loss after step {}", state.step));
    Stopwatch watch;
    const ShardedLlama::LossSum sum = validation_loss(model, *validation, options);
    const double loss = sum.tokens > 0 ? sum.loss / static_cast<double>(sum.tokens) : NAN;
    if (improves_on(loss, state.best_validation_loss, options.early_stop_min_delta)) {
      state.best_validation_loss = loss;
      state.evaluations_without_improvement = 0;
    } else {
      ++state.evaluations_without_improvement;
    }
    evaluation_seconds = watch.seconds();
    evaluated_step = state.step;
    ValidationLine line;
    line.step = state.step;
    line.epoch = order.epoch();
    line.val_loss = loss;
    line.val_tokens = sum.tokens;
    line.best_val_loss = state.best_validation_loss.value_or(NAN);
    line.evaluations_without_improvement = state.evaluations_without_improvement;
    line.seconds = evaluation_seconds;
    reporter.report_validation(line);
    return comm.allreduce_value<double>(patience_spent() ? 1.0 : 0.0, ReduceOp::kMax) > 0;
  };
  bool early_stopped = patience_spent();
  if (early_stopped && state.step < epochs.total_steps) {
    log_info("the checkpoint's training had stopped early at step {} ({} evaluation(s) without improvement, "
             "train.early_stop_patience {}): nothing to train",
             state.step, state.evaluations_without_improvement, options.early_stop_patience);
  }
  while (state.step < epochs.total_steps && !early_stopped) {
    const CollectiveTraffic traffic_before = collective_traffic();  // the step's traffic starts with its vote
    // Until a checkpoint has been timed, assume it costs about one step; and
    // the evaluation after the next step, when one is due.
    const bool evaluation_next = options.eval_every > 0 && (state.step + 1) % options.eval_every == 0;
    const double reserve = step_seconds + std::max(checkpoint_seconds, step_seconds) +
                           (evaluation_next ? evaluation_seconds : 0.0);
    const StepVote vote =
        vote_before_step(comm, options, budget, stop_signals, wall.seconds() + reserve, since_checkpoint.seconds());
    if (vote.stop) {
      stopped = true;
      log_warn("stopping at step {}: {}", state.step,
                vote.signal == 0 ? fmt::format("time limit {:.0f} s reached ({})", budget.seconds.value_or(0.0),
                                               budget.reason)
                : vote.signal == stop_signals.received()
                    ? fmt::format("signal {} received", vote.signal)
                    : fmt::format("signal {} received by another rank", vote.signal));
      break;
    }

    set_progress_label(fmt::format("step {}", state.step + 1));
    Stopwatch step_watch;
    TrainBatch batch = next_global_batch(order, data, options.global_batch);
    const double useful_tokens = static_cast<double>(batch.documents.segment_ids.ge(0).sum().item<int64_t>());
    const double lr = lr_at(schedule, state.step);
    const double loss = model.forward_backward(batch, options.micro_batch, scaler.scale());
    StepOutcome outcome = optimizer.step(lr, options.grad_clip, scaler, state.adam_steps);
    ++state.step;
    const BadStepVerdict verdict = bad_steps.after_step(state.step, loss, outcome, model.sharded());
    if (verdict.stop) {
      reporter.finish();
      // Skipped steps changed no weight: the model is still that of the last
      // good step, worth keeping unless the weights themselves went bad.
      if (verdict.parameters_finite) {
        SaveResult saved = save_training(model, optimizer, state, order, scaler, options.checkpoints, "bad steps");
        if (saved.ok) {
          throw Error(fmt::format("{}; the weights of step {}, the last good one, are saved in {}", verdict.message,
                                  verdict.last_good_step, saved.path));
        }
      }
      throw Error(verdict.message);
    }
    const double seconds = step_watch.seconds();
    step_seconds = step_seconds == 0.0 ? seconds : 0.8 * step_seconds + 0.2 * seconds;
    reporter.report(state.step, order.epoch(), loss, lr, outcome, useful_tokens, seconds,
                    step_seconds * static_cast<double>(epochs.total_steps - state.step),
                    collective_traffic().since(traffic_before));

    if (options.eval_every > 0 && state.step % options.eval_every == 0 && evaluate()) {
      early_stopped = true;
      log_info("early stopping at step {}: the validation loss has not improved by more than {} on its best {:.4f} "
               "for {} evaluation(s) (train.early_stop_patience {}); training is complete",
               state.step, options.early_stop_min_delta, state.best_validation_loss.value_or(NAN),
               state.evaluations_without_improvement, options.early_stop_patience);
      break;
    }
    const bool due = (options.checkpoint_every_steps > 0 && state.step % options.checkpoint_every_steps == 0) ||
                     vote.checkpoint;
    if (due && state.step < epochs.total_steps) {
      SaveResult result = save_training(model, optimizer, state, order, scaler, options.checkpoints, "periodic");
      checkpoint_seconds = std::max(checkpoint_seconds, result.seconds);
      since_checkpoint.reset();
    }
  }

  // The end of the plan: its loss, unless the last step was just evaluated
  // (or this run trained no step).
  if (!stopped && !early_stopped && options.eval_every > 0 && state.step > first_step && evaluated_step != state.step) {
    evaluate();
  }
  reporter.finish();
  set_progress_label(fmt::format("the final checkpoint after step {}", state.step));
  SaveResult final_save = save_training(model, optimizer, state, order, scaler, options.checkpoints,
                                        stopped ? "stop" : early_stopped ? "early stop" : "final");
  log_info("trained {} steps in {:.1f} s; peak RSS {}", state.step, wall.seconds(),
            format_bytes(static_cast<double>(peak_rss_bytes())));
  if (stopped) {
    log_warn("stopped before the end of the plan; resume with --resume auto (exit status {})", kExitTimeLimit);
    return kExitTimeLimit;
  }
  if (!final_save.ok) throw Error("the final checkpoint could not be written: " + final_save.message);
  return kExitOk;
}

}  // namespace metareuse
