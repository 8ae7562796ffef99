// metareuse eval / report: answer held-out questions with a tuned model and a
// baseline, write eval.json and answers.jsonl; render a run's report.html.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>  // TensorOptions

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "commands.h"
#include "metareuse/train/trainer.h"
#include "flags.h"
#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/eval/evaluate.h"
#include "metareuse/eval/report.h"

namespace metareuse::cli {
namespace fs = std::filesystem;

namespace {

std::string g_report_run;
std::string g_report_out;

// The tokenizer for a model: tokenizer.path when set; else the one the
// checkpoint's training config names; else a tokenizer file in the model
// folder (export copies it there).
std::string tokenizer_for(const Config& config, const std::string& model_path, const ModelSource& source) {
  std::string path = config.get_string("tokenizer.path");
  if (!path.empty()) return path;
  if (const auto* checkpoint = dynamic_cast<const CheckpointModelSource*>(&source)) {
    const nlohmann::json& meta = checkpoint->meta();
    if (meta.contains("config") && meta["config"].contains("tokenizer")) {
      path = meta["config"]["tokenizer"].value("path", std::string());
      if (!path.empty()) return path;
    }
  }
  std::error_code error;
  if (fs::is_directory(model_path, error)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "spm.model"}) {
      if (fs::exists(fs::path(model_path) / name)) return (fs::path(model_path) / name).string();
    }
  }
  throw UsageError(fmt::format("no tokenizer for model '{}': give --tokenizer (tokenizer.path)", model_path));
}

// The prompt template is tokenizer.template: checkpoints do not record the
// dataset's template, so a differing value in the checkpoint's training
// config is only warned about.
std::string template_for(const Config& config, const ModelSource& source) {
  std::string configured = config.get_string("tokenizer.template");
  if (const auto* checkpoint = dynamic_cast<const CheckpointModelSource*>(&source)) {
    const nlohmann::json& meta = checkpoint->meta();
    if (meta.contains("config") && meta["config"].contains("tokenizer")) {
      std::string trained = meta["config"]["tokenizer"].value("template", configured);
      if (trained != configured) {
        log::warn("{}: its training config says tokenizer.template={}, prompts use {}", checkpoint->path(), trained,
                  configured);
      }
    }
  }
  return configured;
}

// A checkpoint records the identity of the tokenizer its dataset was made with.
void check_tokenizer(const Tokenizer& tokenizer, const std::string& tokenizer_path, const ModelSource& source) {
  const auto* checkpoint = dynamic_cast<const CheckpointModelSource*>(&source);
  if (checkpoint == nullptr || !checkpoint->meta().contains("tokenizer") || !checkpoint->meta()["tokenizer"].is_string()) {
    return;
  }
  const std::string trained = checkpoint->meta()["tokenizer"].get<std::string>();
  if (trained != tokenizer.identity()) {
    throw InputError(fmt::format("{} was trained with tokenizer {}, but {} is {}", checkpoint->path(), trained,
                                 tokenizer_path, tokenizer.identity()));
  }
}

struct ModelRun {
  std::string role;  // "model", "baseline", "control", or an experiment's names
  std::string path;
  bool patterns = true;  // prompts carry handbook patterns
  std::string description;
  std::string tokenizer;
  std::string template_name;
  std::vector<eval::QuestionResult> results;  // rank 0
  nlohmann::ordered_json summary;
};

}  // namespace

void eval_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--model", "eval.model",
                 "Model: Hugging Face folder, checkpoint file, or checkpoint folder (latest) (eval.model)", overrides);
  add_value_flag(app, "--baseline", "eval.baseline", "Baseline model, same kinds as --model (eval.baseline)",
                 overrides);
  add_value_flag(app, "--questions", "eval.questions", "Held-out questions, JSON Lines (eval.questions)", overrides);
  add_value_flag(app, "--tokenizer", "tokenizer.path", "Tokenizer file (tokenizer.path)", overrides);
  add_value_flag(app, "--handbook", "eval.handbook", "Handbook for prompts and pattern use (eval.handbook)",
                 overrides);
  add_value_flag(app, "--max-new-tokens", "eval.max_new_tokens", "Token budget per answer (eval.max_new_tokens)",
                 overrides);
  auto* greedy = app.add_flag_callback(
      "--greedy", [&overrides] { overrides.push_back("eval.greedy=true"); }, "Greedy decoding (the default)");
  auto* temperature = app.add_option_function<std::string>(
      "--temperature",
      [&overrides](const std::string& value) {
        overrides.push_back("eval.greedy=false");
        overrides.push_back("eval.temperature=" + value);
      },
      "Sample with this temperature (eval.temperature; sets eval.greedy=false)");
  auto* top_p = app.add_option_function<std::string>(
      "--top-p", [&overrides](const std::string& value) { overrides.push_back("eval.top_p=" + value); },
      "Sampling nucleus (eval.top_p)");
  auto* seed = app.add_option_function<std::string>(
      "--seed", [&overrides](const std::string& value) { overrides.push_back("run.seed=" + value); },
      "Sampling seed (run.seed)");
  greedy->excludes(temperature)->excludes(top_p)->excludes(seed);
  add_value_flag(app, "--limit", "eval.limit", "Evaluate the first N questions (eval.limit)", overrides);
  add_value_flag(app, "--out", "eval.out", "Output folder (eval.out; default <run folder>/eval)", overrides);
}

int eval_execute(CommandContext& context, const std::string& model_path, const std::string& baseline_path,
                 const std::string& questions_path, const std::string& out_dir) {
  if (model_path.empty()) throw UsageError("give the model with --model (eval.model)");
  const bool patterns = context.config.get_bool("eval.prompt_patterns");
  std::vector<EvalEntry> entries = {{"model", model_path, patterns}};
  if (context.config.get_bool("eval.control")) entries.push_back({"control", model_path, false});
  if (!baseline_path.empty()) entries.push_back({"baseline", baseline_path, patterns});
  return eval_entries_execute(context, entries, questions_path, out_dir);
}

int eval_entries_execute(CommandContext& context, const std::vector<EvalEntry>& entries,
                         const std::string& questions_path, const std::string& out_dir) {
  const Config& config = context.config;
  Communicator& communicator = context.runtime.world();
  const bool leader = context.runtime.rank() == 0;
  Stopwatch wall;
  if (questions_path.empty()) throw UsageError("give the held-out questions with --questions (eval.questions)");
  if (entries.empty()) throw UsageError("give the model with --model (eval.model)");

  eval::QuestionSet questions = eval::read_questions(questions_path, config.get_int("eval.limit"));
  if (questions.questions.empty()) throw InputError(fmt::format("{}: no usable questions", questions_path));

  // The handbook: for prompts (as augment built them) and for pattern use.
  std::string handbook_path = config.get_string("eval.handbook");
  if (handbook_path.empty()) {
    std::string candidate = run_folder(config) + "/handbook.json";
    if (fs::exists(candidate)) handbook_path = candidate;
  }
  std::optional<patterns::Handbook> handbook;
  if (!handbook_path.empty()) handbook = patterns::read_handbook(handbook_path);
  const patterns::Handbook* handbook_pointer = handbook ? &*handbook : nullptr;
  const augment::AugmentMode mode = augment::parse_augment_mode(config.get_string("augment.mode"));
  const bool any_patterns = std::any_of(entries.begin(), entries.end(), [](const EvalEntry& e) { return e.patterns; });
  // Used mode retrieves with each pattern's context: the training examples that use it.
  std::optional<augment::PatternContexts> contexts;
  std::string contexts_path;
  if (mode == augment::AugmentMode::kUsed && handbook && any_patterns) {
    contexts_path = config.get_string("eval.contexts");
    if (contexts_path.empty()) contexts_path = run_folder(config) + "/augmented.jsonl";
    contexts = augment::read_pattern_contexts(contexts_path, *handbook);
  }
  auto prompt_builder = [&](bool patterns) {
    return eval::PromptBuilder(handbook_pointer, patterns, mode, static_cast<std::size_t>(config.get_int("augment.top_k")),
                               config.get_number("augment.bm25_k1"), config.get_number("augment.bm25_b"),
                               contexts ? &*contexts : nullptr);
  };
  const eval::PromptBuilder with_patterns = prompt_builder(true);
  const eval::PromptBuilder without_patterns = prompt_builder(false);
  eval::PatternMatcher matcher(handbook ? handbook->patterns : std::vector<patterns::Pattern>{});

  eval::EvalOptions options;
  options.max_new_tokens = config.get_int("eval.max_new_tokens");
  options.greedy = config.get_bool("eval.greedy");
  options.temperature = config.get_number("eval.temperature");
  options.top_p = config.get_number("eval.top_p");
  options.seed = static_cast<std::uint64_t>(config.get_int("run.seed"));

  std::vector<ModelRun> runs;
  for (const EvalEntry& entry : entries) {
    ModelRun run;
    run.role = entry.role;
    run.path = entry.path;
    run.patterns = entry.patterns && handbook_pointer != nullptr && mode != augment::AugmentMode::kNone;
    runs.push_back(std::move(run));
  }
  for (ModelRun& run : runs) {
    auto source = open_model_or_checkpoint(run.path);
    run.description = source->description();
    run.tokenizer = tokenizer_for(config, run.path, *source);
    run.template_name = template_for(config, *source);
    auto tokenizer = load_tokenizer(run.tokenizer);
    check_tokenizer(*tokenizer, run.tokenizer, *source);
    if (tokenizer->vocab_size() > source->config().vocab_size) {
      throw InputError(fmt::format("tokenizer {} has {} tokens but model {} has {} embedding rows", run.tokenizer,
                                   tokenizer->vocab_size(), run.path, source->config().vocab_size));
    }
    LlamaModel model = load_model(*source, torch::TensorOptions().dtype(torch::kFloat32));
    eval::EvalOptions model_options = options;
    model_options.template_name = run.template_name;
    log::info("eval {}: {} on {} questions ({} ranks)", run.role, run.description, questions.questions.size(),
              context.runtime.world_size());
    Stopwatch watch;
    run.results = eval::evaluate_questions(model, *tokenizer, questions.questions,
                                           run.patterns ? with_patterns : without_patterns, matcher, model_options,
                                           communicator);
    if (leader) {
      run.summary = eval::summarize(run.results);
      log::info("eval {}: accuracy {:.1f}% ({}/{}), mean {:.1f} tokens, mean {:.2f} steps, pattern use {:.1f}% "
                "in {:.1f} s",
                run.role, 100.0 * run.summary["accuracy"].get<double>(), run.summary["correct"].get<std::int64_t>(),
                run.results.size(), run.summary["mean_generated_tokens"].get<double>(),
                run.summary["mean_reasoning_steps"].get<double>(),
                100.0 * run.summary["pattern_use_rate"].get<double>(), watch.seconds());
    }
  }

  if (leader) {
    fs::create_directories(out_dir);
    const std::string answers_path = (fs::path(out_dir) / "answers.jsonl").string();
    {
      std::ofstream answers(answers_path, std::ios::binary | std::ios::trunc);
      if (!answers) throw Error(fmt::format("{}: cannot write", answers_path));
      for (const ModelRun& run : runs) {
        for (const auto& result : run.results) {
          answers << result.to_json(run.role, handbook_pointer)
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
        }
      }
      if (!answers.flush()) throw Error(fmt::format("{}: failed writing", answers_path));
    }
    nlohmann::ordered_json document;
    document["format"] = "metareuse.eval";
    document["version"] = 1;
    document["questions_file"] = questions_path;
    document["questions"] = questions.questions.size();
    document["bad_records"] = questions.bad_records;
    document["generation"] = {{"greedy", options.greedy},
                              {"temperature", options.greedy ? nlohmann::json(nullptr) : nlohmann::json(options.temperature)},
                              {"top_p", options.greedy ? nlohmann::json(nullptr) : nlohmann::json(options.top_p)},
                              {"seed", options.seed},
                              {"max_new_tokens", options.max_new_tokens}};
    document["prompt"] = {{"patterns", any_patterns && handbook_pointer != nullptr},
                          {"augment_mode", config.get_string("augment.mode")},
                          {"top_k", config.get_int("augment.top_k")},
                          {"contexts", contexts_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(contexts_path)}};
    document["handbook"] = handbook_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(handbook_path);
    document["handbook_patterns"] = handbook ? handbook->patterns.size() : 0;
    document["definitions"] = {
        {"accuracy", "final answer after the last '####' (else the last \\boxed{}), normalised (no '$', ',', "
                     "white space or trailing '.'; numbers compared by value), equals the reference"},
        {"generated_tokens", "tokens generated before the stop token (<|eot_id|> for chat, eos for plain)"},
        {"reasoning_tokens", "tokens of the reasoning part (the output before the final '####' or \\boxed), "
                             "re-encoded with the model's tokenizer"},
        {"reasoning_steps", "non-empty sentences of the text before the final answer: cut at newlines and after "
                            ".!? followed by white space"},
        {"pattern_use_rate", "share of answers whose normalised text contains at least one handbook pattern "
                             "word-aligned"}};
    const ModelRun* baseline = nullptr;
    for (const ModelRun& run : runs) {
      if (run.role == "baseline") baseline = &run;
    }
    nlohmann::ordered_json models = nlohmann::ordered_json::object();
    for (const ModelRun& run : runs) {
      models[run.role] = {{"path", run.path},
                          {"source", run.description},
                          {"prompt_patterns", run.patterns},
                          {"tokenizer", run.tokenizer},
                          {"template", run.template_name},
                          {"summary", run.summary}};
      if (baseline != nullptr && &run != baseline) {
        models[run.role]["change_vs_baseline"] = eval::compare_summaries(run.summary, baseline->summary);
      }
    }
    document["models"] = models;
    // The first other entry against the baseline (the report's "relative change" row).
    for (const ModelRun& run : runs) {
      if (baseline == nullptr || &run == baseline) continue;
      document["relative_change"] = eval::compare_summaries(run.summary, baseline->summary);
      document["relative_change_of"] = run.role;
      break;
    }
    document["answers"] = "answers.jsonl";
    document["ranks"] = context.runtime.world_size();
    document["wall_seconds"] = wall.seconds();
    const std::string eval_path = (fs::path(out_dir) / "eval.json").string();
    {
      std::ofstream out(eval_path, std::ios::binary | std::ios::trunc);
      out << document.dump(2) << '\n';
      if (!out.flush()) throw Error(fmt::format("{}: failed writing", eval_path));
    }
    // The table people read.
    std::cout << fmt::format("{:<10} {:>9} {:>12} {:>13} {:>16} {:>11} {:>12}\n", "model", "accuracy", "mean tokens",
                             "median tokens", "reasoning tokens", "mean steps", "pattern use");
    for (const ModelRun& run : runs) {
      const auto& s = run.summary;
      std::cout << fmt::format("{:<10} {:>8.1f}% {:>12.1f} {:>13.1f} {:>16.1f} {:>11.2f} {:>11.1f}%\n", run.role,
                               100.0 * s["accuracy"].get<double>(), s["mean_generated_tokens"].get<double>(),
                               s["median_generated_tokens"].get<double>(), s["mean_reasoning_tokens"].get<double>(),
                               s["mean_reasoning_steps"].get<double>(), 100.0 * s["pattern_use_rate"].get<double>());
    }
    auto percent = [](const nlohmann::json& value) {
      return value.is_null() ? std::string("n/a") : fmt::format("{:+.1f}%", 100.0 * value.get<double>());
    };
    for (const ModelRun& run : runs) {
      if (!models[run.role].contains("change_vs_baseline")) continue;
      const auto& change = models[run.role]["change_vs_baseline"];
      std::cout << fmt::format("change vs baseline ({}): accuracy {:+.1f} points, reasoning tokens {}, mean tokens {}, mean "
                               "steps {}\n",
                               run.role, change["accuracy_points"].get<double>(),
                               percent(change["mean_reasoning_tokens"]), percent(change["mean_generated_tokens"]),
                               percent(change["mean_reasoning_steps"]));
    }
    log::info("wrote {} and {}", eval_path, answers_path);
  }
  communicator.barrier();
  return kExitOk;
}

int eval_run(CommandContext& context) {
  const Config& config = context.config;
  std::string model = config.get_string("eval.model");
  if (model.empty()) {
    // The run's own checkpoints.
    model = checkpoint_folder(config, run_folder(config));
    if (!fs::exists(fs::path(model) / "latest")) {
      throw UsageError(fmt::format("give the model with --model (eval.model); '{}' has no checkpoint", model));
    }
  }
  std::string out = config.get_string("eval.out");
  if (out.empty()) out = run_folder(config) + "/eval";
  return eval_execute(context, model, config.get_string("eval.baseline"), config.get_string("eval.questions"), out);
}

void report_options(CLI::App& app, std::vector<std::string>&) {
  app.add_option("--run", g_report_run, "Run folder (default: the config's run folder)");
  app.add_option("--out", g_report_out, "HTML file to write (default: <run folder>/report.html)");
}

int report_execute(CommandContext& context, const std::string& run, const std::string& out) {
  if (context.runtime.rank() != 0) return kExitOk;
  eval::ReportInputs inputs = eval::report_inputs_for_run(run);
  eval::write_report(inputs, out);
  log::info("wrote {}", out);
  return kExitOk;
}

int report_run(CommandContext& context) {
  std::string run = g_report_run.empty() ? run_folder(context.config) : g_report_run;
  if (!fs::is_directory(run)) throw UsageError(fmt::format("run folder '{}' does not exist", run));
  return report_execute(context, run, g_report_out.empty() ? run + "/report.html" : g_report_out);
}

}  // namespace metareuse::cli
