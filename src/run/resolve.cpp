// The resolve phase (resolve.h): every stage's options, derived and checked once.
#include "metareuse/run/resolve.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>  // getenv, strtod
#include <filesystem>

#include "metareuse/checkpoint/checkpoint.h"    // resolve_checkpoint, read_checkpoint_meta
#include "metareuse/checkpoint/model_source.h"  // is_checkpoint_path
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"  // parse_bytes
#include "metareuse/run/data_stages.h"  // corpus_field_names, decoding_options
#include "metareuse/tokenizer/tokenizer.h"
#include "metareuse/train/model_from_config.h"
#include "metareuse/train/train_state.h"  // a checkpoint's config

namespace metareuse {
using json = nlohmann::json;

namespace {

// Slurm sets SLURM_JOB_END_TIME (epoch seconds) for a job with a time limit;
// training stops a margin before it, so the job checkpoints before Slurm ends
// it, with or without --signal. 0: not in such a job (unset, or 0 for a job
// without a limit).
double slurm_job_end() {
  const char* value = std::getenv("SLURM_JOB_END_TIME");
  if (value == nullptr || *value == '\0') return 0.0;
  char* end = nullptr;
  const double seconds = std::strtod(value, &end);
  if (end == value || *end != '\0') {
    log_warn("SLURM_JOB_END_TIME is '{}', not seconds since the epoch: training ignores it", value);
    return 0.0;
  }
  return seconds > 0 ? seconds : 0.0;
}

// Builds a stage's options from a copy of `config` that records what is read,
// and adds the keys read, with their values, to `keys` (the stage's fingerprint).
template <typename Build>
auto read_for_stage(const Config& config, json& keys, Build&& build) {
  Config reading = config;
  reading.record_reads();
  auto options = build(static_cast<const Config&>(reading));
  for (const std::string& key : reading.keys_read()) keys[key] = reading.get_json(key);
  return options;
}

// The one place the tokenizer and template are resolved (training_text_format)
// and written into the config every later stage reads. `own_tokenizer`: the
// tokenizer to use when neither tokenizer.path nor model.path gives one ("":
// none, a from-scratch `train` on a dataset made elsewhere).
Config with_text_format(const Config& given, const std::string& own_tokenizer, TextFormat& text) {
  text = training_text_format(given);
  if (text.tokenizer.empty()) text.tokenizer = own_tokenizer;
  Config config = given;
  config.set("tokenizer.path", text.tokenizer);
  config.set("tokenizer.template", text.template_name);
  return config;
}

// What training derives in a run folder: a from-scratch model gets exactly
// its tokenizer's vocabulary, the dataset is the folder's, and a train stage
// that stopped early (time limit, signal) resumes from its checkpoint. The
// result is what `metareuse train --config <run>/config.resolved.json` runs as is.
Config training_config(const Config& config, const RunLayout& layout, const std::optional<TokenizerTraining>& trained) {
  Config training = config;
  if (config.get_string("model.path").empty() && config.get_int("model.vocab_size") == 0) {
    training.set("model.vocab_size", trained ? trained->vocab_size
                                             : load_tokenizer(config.get_string("tokenizer.path"))->vocab_size());
  }
  training.set("dataset.output", layout.dataset());
  if (training.get_string("train.resume").empty()) training.set("train.resume", "auto");
  return training;
}

// A second training's own config (the baseline's in <run>/baseline, the
// BC-SFT student's in <run>/student): the run's, from the same model.path or
// preset, with its data and checkpoints in `folder` and no patterns in its
// examples.
Config own_folder_config(const Config& config, const RunLayout& folder) {
  Config own = config;
  own.set("augment.mode", "none");
  own.set("dataset.output", folder.dataset());
  own.set("checkpoint.dir", folder.checkpoints());
  return own;
}

// How the handbook's patterns are picked for a test-time prompt (eval's
// entries, distill's teacher): as augment picked them for training.
void read_retrieval(const Config& config, std::string& mode, std::size_t& top_k, double& bm25_k1, double& bm25_b) {
  mode = config.get_string("augment.mode");
  top_k = static_cast<std::size_t>(config.get_int("augment.top_k"));
  bm25_k1 = config.get_number("augment.bm25_k1");
  bm25_b = config.get_number("augment.bm25_b");
}

// A model answering questions (eval, distill): the decoding of `section` and
// the run's template.
EvalOptions answering_options(const Config& config, const std::string& section) {
  EvalOptions options;
  static_cast<GenerationOptions&>(options) = decoding_options(config, section);
  options.template_name = config.get_string("tokenizer.template");
  return options;
}

// export.dtype and export.max_shard: how a checkpoint is written out.
ExportOptions exported_as(const Config& config) {
  ExportOptions options;
  options.dtype = parse_export_dtype(config.get_string("export.dtype"));
  options.max_shard_bytes = parse_bytes(config.get_string("export.max_shard"));
  return options;
}

ResolvedTraining resolved_training(const Config& config, const RunLayout& layout, json* keys) {
  ResolvedTraining training;
  training.folder = layout.folder();
  training.config = config;
  auto build = [&](const Config& reading) { return training_options(reading, layout, model_config_from(reading)); };
  json ignored;
  training.options = read_for_stage(config, keys ? *keys : ignored, build);
  return training;
}

}  // namespace

TrainOptions training_options(const Config& config, const RunLayout& layout, const LlamaConfig& model) {
  TrainOptions options;
  options.model = model;
  options.model_path = config.get_string("model.path");
  options.tokenizer_path = config.get_string("tokenizer.path");
  options.seed = static_cast<std::uint64_t>(config.get_int("run.seed"));
  options.dataset_path = config.get_string("dataset.output");
  if (options.dataset_path.empty()) options.dataset_path = layout.dataset();
  options.precision = config.get_string("train.precision");
  options.device = config.get_string("train.device");
  options.device_bytes = parse_bytes(config.get_string("train.device_memory"));
  options.global_batch = config.get_int("train.global_batch");
  options.micro_batch = config.get_int("train.micro_batch");
  options.recompute = config.get_string("train.recompute");
  options.overlap = config.get_bool("train.overlap");
  options.loss_chunk_rows = config.get_int("train.loss_chunk_rows");
  options.epoch_policy = {config.get_int("train.policy_small_examples"), config.get_int("train.policy_small_epochs"),
                          config.get_int("train.policy_small_max_steps"), config.get_int("train.policy_epochs")};
  options.epochs = config.get_int("train.epochs");
  options.max_steps = config.get_int("train.max_steps");
  options.max_bad_steps = config.get_int("train.max_bad_steps");
  options.adamw = {config.get_number("train.lr"),           config.get_number("train.beta1"),
                   config.get_number("train.beta2"),        config.get_number("train.eps"),
                   config.get_number("train.weight_decay"), config.get_string("train.weight_decay_policy")};
  options.grad_clip = config.get_number("train.grad_clip");
  options.lr_schedule = config.get_string("train.lr_schedule");
  options.warmup_steps = config.get_int("train.warmup_steps");
  options.lr_min = config.get_number("train.lr_min");
  options.loss_scaling.enabled = options.precision == "fp16";
  options.loss_scaling.initial_scale = config.get_number("train.loss_scale_initial");
  options.loss_scaling.growth_interval = config.get_int("train.loss_scale_growth_interval");
  options.loss_scaling.hysteresis = config.get_int("train.loss_scale_hysteresis");
  options.loss_scaling.min_scale = config.get_number("train.loss_scale_min");
  options.checkpoints.dir = layout.checkpoint_folder(config);
  options.checkpoints.keep_last = config.get_int("checkpoint.keep_last");
  options.checkpoints.max_total_bytes = config.get_int("checkpoint.max_total_bytes");
  options.checkpoints.compression = static_cast<int>(config.get_int("checkpoint.compression"));
  options.resume = config.get_string("train.resume");
  options.time_limit = config.get_number("train.time_limit");
  options.job_end = slurm_job_end();
  options.job_end_margin = config.get_number("train.job_end_margin");
  options.checkpoint_every_minutes = config.get_number("checkpoint.every_minutes");
  options.checkpoint_every_steps = config.get_int("checkpoint.every_steps");
  options.eval_every = config.get_int("train.eval_every");
  options.early_stop_patience = config.get_int("train.early_stop_patience");
  options.early_stop_min_delta = config.get_number("train.early_stop_min_delta");
  options.log_every = config.get_int("train.log_every");
  options.progress = config.get_string("train.progress");
  options.metrics_path = layout.metrics();
  options.resolved_config = config;
  options.config_path = layout.resolved_config();
  return options;
}

EvalRunOptions eval_run_options(const Config& config, const RunLayout& layout) {
  EvalRunOptions options;
  std::string model = config.get_string("eval.model");
  if (model.empty()) {
    model = layout.checkpoint_folder(config);  // the run's own checkpoints
    options.run_checkpoints = model;
  }
  const bool patterns = config.get_bool("eval.prompt_patterns");
  options.models = {{"model", model, patterns}};
  if (config.get_bool("eval.control")) options.models.push_back({"control", model, false});
  const std::string baseline = config.get_string("eval.baseline");
  if (!baseline.empty()) options.models.push_back({"baseline", baseline, patterns});
  options.questions = config.get_string("eval.questions");
  options.fields = corpus_field_names(config);  // one corpus file trains and evaluates
  options.limit = config.get_int("eval.limit");
  options.out_dir = config.get_string("eval.out");
  if (options.out_dir.empty()) options.out_dir = layout.eval_folder();
  options.eval_file = RunLayout::eval_file_in(options.out_dir);
  options.answers = RunLayout::answers_in(options.out_dir);
  options.partial_answers = RunLayout::partial_answers_in(options.out_dir);
  options.handbook = config.get_string("eval.handbook");
  if (options.handbook.empty()) {
    options.handbook = layout.handbook();
    options.handbook_if_exists = true;
  }
  options.contexts = config.get_string("eval.contexts");
  if (options.contexts.empty()) options.contexts = layout.augmented();
  read_retrieval(config, options.augment_mode, options.top_k, options.bm25_k1, options.bm25_b);
  options.tokenizer = config.get_string("tokenizer.path");
  options.generation = answering_options(config, "eval");
  options.time_limit = config.get_number("eval.time_limit");
  return options;
}

namespace {

// The prompt settings a model was trained with: what eval's prompts must match.
constexpr const char* kPromptKeys[] = {"augment.mode", "augment.top_k", "augment.bm25_k1", "augment.bm25_b"};

// The run folder a checkpoint file belongs to: the one its own config names
// when that run's checkpoint folder holds it, else the folder above a
// `checkpoints` folder (how every run lays them out, wherever it was moved);
// "" when neither.
std::string run_folder_of_checkpoint(const std::string& file, const Config& trained) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(file).parent_path();
  const RunLayout named = RunLayout::for_config(trained);
  std::error_code error;
  if (fs::equivalent(named.checkpoint_folder(trained), folder, error) && !error) return named.folder();
  if (folder.filename() == RunFile::kCheckpoints) {
    const fs::path run = folder.parent_path();
    return run.empty() ? "." : run.string();
  }
  return "";
}

}  // namespace

EvalRunOptions eval_command_options(const Config& config) {
  namespace fs = std::filesystem;
  const RunLayout layout = RunLayout::for_config(config);
  const std::string model = config.get_string("eval.model");
  if (model.empty() || !is_checkpoint_path(model)) return eval_run_options(config, layout);
  const std::string file = resolve_checkpoint(model, "");
  const TrainState saved = TrainState::from_json(read_checkpoint_meta(file), file);
  // The keys read from the checkpoint's config: where its run was, and how it
  // prompted (a key an older checkpoint lacks stays the given config's).
  Config trained;
  std::vector<std::string> recorded;
  std::vector<std::string> keys = {"run.name", "run.out_dir", "checkpoint.dir"};
  keys.insert(keys.end(), std::begin(kPromptKeys), std::end(kPromptKeys));
  for (const std::string& key : keys) {
    const json::json_pointer pointer("/" + key.substr(0, key.find('.')) + "/" + key.substr(key.find('.') + 1));
    if (!saved.config.contains(pointer)) continue;
    trained.set(key, saved.config.at(pointer));
    recorded.push_back(key);
  }
  const std::string run_folder = run_folder_of_checkpoint(file, trained);
  std::error_code error;
  if (!run_folder.empty() && fs::equivalent(run_folder, layout.folder(), error) && !error) {
    return eval_run_options(config, layout);  // the config's own run
  }
  if (run_folder.empty()) {
    if (config.get_string("eval.out").empty()) {
      throw UsageError(fmt::format("eval --model {}: the checkpoint is in no run folder, so its results have no "
                                   "home; give --out (eval.out)",
                                   model));
    }
    return eval_run_options(config, layout);
  }
  Config evaluated = config;
  for (const char* key : kPromptKeys) {
    if (std::find(recorded.begin(), recorded.end(), key) != recorded.end()) evaluated.set(key, trained.get_json(key));
  }
  EvalRunOptions options = eval_run_options(evaluated, RunLayout(run_folder));
  log_info("eval of {}: the run in {} (results in {}; its handbook and augment.mode {}, as trained)", file,
           run_folder, options.out_dir, options.augment_mode);
  return options;
}

DistillOptions distill_run_options(const Config& config, const RunLayout& layout) {
  DistillOptions options;
  options.teacher = config.get_string("distill.teacher");
  if (options.teacher.empty()) options.teacher = layout.checkpoint_folder(config);
  options.corpus_files = config.get_string_list("corpus.files");
  options.fields = corpus_field_names(config);
  options.limit = config.get_int("distill.limit");
  options.samples = config.get_int("distill.samples");
  options.handbook = config.get_string("distill.handbook");
  if (options.handbook.empty()) options.handbook = layout.handbook();
  options.contexts = layout.augmented();
  read_retrieval(config, options.augment_mode, options.top_k, options.bm25_k1, options.bm25_b);
  options.tokenizer = config.get_string("tokenizer.path");
  options.generation = answering_options(config, "distill");
  options.max_sequence = config.get_int("dataset.sequence_length");
  options.time_limit = config.get_number("distill.time_limit");
  options.out = config.get_string("distill.out");
  if (options.out.empty()) options.out = layout.distilled();
  const RunLayout beside(std::filesystem::path(options.out).parent_path().string());
  options.answers = beside.distill_answers();
  options.summary = beside.distill_summary();
  check_distill_options(options);
  return options;
}

ExportOptions export_stage_options(const Config& config, const RunLayout& layout) {
  ExportOptions options = exported_as(config);
  options.checkpoint = config.get_string("export.checkpoint");
  if (options.checkpoint.empty()) options.checkpoint = layout.checkpoint_folder(config);
  options.out = config.get_string("export.out");
  if (options.out.empty()) options.out = layout.export_folder();
  return options;
}

ForwardFileOptions forward_file_options(const Config& config) {
  ForwardFileOptions options;
  options.model = config.get_string("forward.model");
  options.ids = config.get_string("forward.ids");
  options.out = config.get_string("forward.out");
  options.dtype = config.get_string("forward.dtype");
  check_forward_file_options(options);
  return options;
}

GenerateTextOptions generate_text_options(const Config& config) {
  GenerateTextOptions options;
  options.model = config.get_string("generate.model");
  options.tokenizer = config.get_string("tokenizer.path");
  options.template_name = config.get_string("tokenizer.template");
  options.prompt_ids = config.get_string("generate.prompt_ids");
  options.prompt = config.get_string("generate.prompt");
  options.prompts_file = config.get_string("generate.prompts");
  options.prompts_format = config.get_string("generate.prompts_format");
  options.chat = config.get_bool("generate.chat");
  options.stop = config.get_bool("generate.stop");
  options.generation = decoding_options(config, "generate");
  options.generation.use_cache = config.get_bool("generate.use_cache");
  check_generate_text_options(options);
  return options;
}

RunReportOptions run_report_options(const Config& config) {
  const RunLayout layout = RunLayout::for_config(config);
  RunReportOptions options;
  options.run_folder = layout.folder();
  options.out = config.get_string("report.out").empty() ? layout.report() : config.get_string("report.out");
  options.watch = config.get_bool("report.watch");
  options.interval = config.get_number("report.interval");
  return options;
}

ResolvedRun resolve_run(const Config& given) {
  ResolvedRun run(RunLayout::for_config(given));
  const RunLayout& layout = run.layout;
  run.config = with_text_format(given, layout.tokenizer(), run.text);
  const Config& config = run.config;
  auto& keys = run.stage_keys;

  run.patterns = read_for_stage(config, keys["patterns"],
                                [&](const Config& c) { return patterns_stage_options(c, layout.handbook()); });
  run.augment = read_for_stage(config, keys["augment"], [&](const Config& c) {
    return augment_stage_options(c, layout.handbook(), layout.augmented());
  });
  run.prepare = read_for_stage(config, keys["prepare"], [&](const Config& c) {
    if (c.get_string("tokenizer.path") == layout.tokenizer()) {
      run.tokenizer_training = TokenizerTraining{layout.augmented(), layout.tokenizer(),
                                                 c.get_int("tokenizer.train_vocab_size"),
                                                 c.get_string("tokenizer.train_model_type")};
    }
    return prepare_stage_options(c, run.text, layout.augmented(), layout.dataset());
  });
  run.train = resolved_training(training_config(config, layout, run.tokenizer_training), layout, &keys["train"]);
  // Before any stage runs: the dataset this run prepares holds validation
  // sequences exactly when dataset.validation_share is above 0 (prepare
  // refuses a share that leaves none).
  check_evaluation_options(run.train.options, run.prepare.validation_share > 0 ? 1 : 0,
                           fmt::format("{} (prepared with dataset.validation_share {})", layout.dataset(),
                                       run.prepare.validation_share));
  run.checkpoints = read_for_stage(config, keys["checkpoint"], [&](const Config& c) {
    return layout.checkpoint_folder(c);
  });
  run.baseline = config.get_bool("experiment.baseline");
  run.bc_sft = config.get_bool("experiment.bc_sft");
  run.eval = read_for_stage(config, keys["eval"], [&](const Config& c) {
    EvalRunOptions options = eval_run_options(c, layout);
    const std::string model = options.models.front().path;
    if (c.get_bool("experiment.baseline")) {
      // The three entries: baseline, reuse (prompted with patterns) and control (prompted without).
      options.models = {{"baseline", layout.baseline().checkpoints(), false}, {"reuse", model, true},
                        {"control", model, false}};
    }
    if (c.get_bool("experiment.bc_sft")) {
      if (!c.get_bool("experiment.baseline")) options.models = {{"reuse", model, true}};
      // The student answers as it was trained: the bare question.
      options.models.push_back({"bc-sft", layout.student().checkpoints(), false});
    }
    return options;
  });
  run.export_options = read_for_stage(config, keys["export"], [&](const Config& c) {
    // The run's own checkpoints into the run's export/ (export.checkpoint and .out are `metareuse export`'s).
    ExportOptions options = exported_as(c);
    options.checkpoint = layout.checkpoint_folder(c);
    options.out = layout.export_folder();
    return options;
  });
  if (run.baseline) {
    const Config baseline = own_folder_config(config, layout.baseline());
    json& data_keys = keys["baseline-data"];
    run.baseline_augment = read_for_stage(baseline, data_keys, [&](const Config& c) {
      return augment_stage_options(c, layout.handbook(), layout.baseline_examples());
    });
    run.baseline_prepare = read_for_stage(baseline, data_keys, [&](const Config& c) {
      return prepare_stage_options(c, run.text, layout.baseline_examples(), layout.baseline().dataset());
    });
    run.baseline_train = resolved_training(training_config(baseline, layout.baseline(), run.tokenizer_training),
                                           layout.baseline(), &keys["baseline-train"]);
  }
  if (run.bc_sft) {
    run.distill = read_for_stage(config, keys["distill"], [&](const Config& c) {
      DistillOptions options = distill_run_options(c, layout);
      // The run's files, whatever distill.out says (that key is `metareuse distill`'s).
      options.out = layout.distilled();
      options.answers = layout.distill_answers();
      options.summary = layout.distill_summary();
      return options;
    });
    const Config student = own_folder_config(config, layout.student());
    run.student_prepare = read_for_stage(student, keys["student-data"], [&](const Config& c) {
      return prepare_stage_options(c, run.text, layout.distilled(), layout.student().dataset());
    });
    run.student_train = resolved_training(training_config(student, layout.student(), run.tokenizer_training),
                                          layout.student(), &keys["student-train"]);
  }
  return run;
}

ResolvedTraining resolve_training(const Config& given) {
  const RunLayout layout = RunLayout::for_config(given);
  TextFormat text;
  return resolved_training(with_text_format(given, "", text), layout, nullptr);
}

TrainingPlan plan_training(const Config& config, int world_size) {
  const RunLayout layout = RunLayout::for_config(config);
  TrainingPlan plan;
  plan.model = plan_model_config(config);
  plan.model_name = config.get_string("model.path").empty() ? config.get_string("model.preset")
                                                            : config.get_string("model.path");
  const TrainOptions options = training_options(config, layout, plan.model);
  plan.precision = options.precision;
  plan.micro_batch = options.micro_batch;
  const std::int64_t ranks = config.get_int("plan.ranks") > 0 ? config.get_int("plan.ranks") : world_size;
  plan.sequence_length = config.get_int("plan.sequence_length") > 0 ? config.get_int("plan.sequence_length")
                                                                    : config.get_int("dataset.sequence_length");
  // The rules `train` applies, on the hardware planned for (a GPU unless
  // train.device says cpu), without the memory verdict: plan prints that.
  TrainOptions rules = options;
  rules.device_bytes = 0;
  validate_training(rules, options.device == "cpu" ? "cpu" : "cuda", plan.sequence_length, static_cast<int>(ranks));
  plan.memory = plan_memory(plan.model, ranks, options.micro_batch, plan.sequence_length, options.precision,
                            options.device_bytes, options.recompute, options.loss_chunk_rows, options.overlap);
  return plan;
}

std::string format_training_plan(const TrainingPlan& plan) {
  return fmt::format("model {} ({} layers, hidden {}), {}, micro batch {}, sequence {}\n", plan.model_name,
                     plan.model.num_hidden_layers, plan.model.hidden_size, plan.precision, plan.micro_batch,
                     plan.sequence_length) +
         format_plan(plan.memory);
}

}  // namespace metareuse
