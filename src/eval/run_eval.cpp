// The eval stage: models loaded and checked against their tokenizers, the
// answers, and eval.json / answers.jsonl.
#include "metareuse/eval/run_eval.h"

#include <fmt/format.h>
#include <torch/torch.h>  // TensorOptions

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "metareuse/augment/prompt.h"
#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/eval/evaluate.h"
#include "metareuse/tokenizer/chat_template.h"  // model_tokenizer_candidates
#include "metareuse/tokenizer/prompt_format.h"

namespace metareuse {
namespace fs = std::filesystem;

namespace {

// What a model brings to resolve_text_format (prompt_format.h): a checkpoint
// the tokenizer and template it was trained with (its "text"; for checkpoints
// older than that, its training config's tokenizer keys), a Hugging Face
// folder its own files.
ModelText model_text(const std::string& model_path, const ModelSource& source) {
  ModelText text;
  text.name = model_path;
  if (const auto* checkpoint = dynamic_cast<const CheckpointModelSource*>(&source)) {
    if (std::optional<TextFormat> trained = checkpoint->trained_text()) text.trained = *trained;
    return text;
  }
  text.folder = model_path;
  return text;
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

// One entry's model, loaded and checked against its tokenizer, answering every question.
struct EntryRun {
  EvalModelEntry entry;
  std::vector<QuestionResult> results;  // rank 0
};

}  // namespace

AnsweringModel load_answering_model(const std::string& path, const std::string& tokenizer_path,
                                    const std::string& template_name) {
  AnsweringModel answering;
  auto source = open_model_or_checkpoint(path);
  answering.description = source->description();
  answering.text = resolve_text_format({tokenizer_path, template_name}, model_text(path, *source));
  if (answering.text.tokenizer.empty()) {
    std::error_code error;
    const std::vector<std::string> tried =
        fs::is_directory(path, error) ? model_tokenizer_candidates(path) : std::vector<std::string>{};
    throw UsageError(fmt::format("no tokenizer for model '{}': give --tokenizer (tokenizer.path){}", path,
                                 tried.empty() ? std::string() : " (" + not_found_among("a tokenizer", tried) + ")"));
  }
  answering.tokenizer = load_tokenizer(answering.text.tokenizer);
  check_tokenizer(*answering.tokenizer, answering.text.tokenizer, *source);
  if (answering.tokenizer->vocab_size() > source->config().vocab_size) {
    throw InputError(fmt::format("tokenizer {} has {} tokens but model {} has {} embedding rows",
                                 answering.text.tokenizer, answering.tokenizer->vocab_size(), path,
                                 source->config().vocab_size));
  }
  answering.model = std::make_unique<LlamaModel>(load_model(*source, torch::TensorOptions().dtype(torch::kFloat32)));
  return answering;
}

namespace {

EntryRun evaluate_entry(const EvalModel& model_entry, bool patterns, const EvalRunOptions& options,
                        const std::vector<Question>& questions, const PromptPolicy& prompts,
                        const PatternMatcher& matcher, const Handbook* handbook, Communicator& communicator) {
  EntryRun run;
  run.entry.role = model_entry.role;
  run.entry.path = model_entry.path;
  run.entry.prompt_patterns = patterns;
  const AnsweringModel answering =
      load_answering_model(model_entry.path, options.tokenizer, options.generation.template_name);
  run.entry.source = answering.description;
  run.entry.tokenizer = answering.text.tokenizer;
  run.entry.template_name = answering.text.template_name;
  const LlamaModel& model = *answering.model;
  const Tokenizer& tokenizer = *answering.tokenizer;
  EvalOptions generation = options.generation;
  generation.template_name = run.entry.template_name;
  generation.tokenizer_path = run.entry.tokenizer;
  log_info("eval {}: {} on {} questions ({} ranks); tokenizer {}, template {}", run.entry.role, run.entry.source,
            questions.size(), communicator.size(), run.entry.tokenizer, run.entry.template_name);
  Stopwatch watch;
  run.results = evaluate_questions(model, tokenizer, questions, prompts, matcher, generation, communicator);
  if (communicator.rank() == 0) {
    const Summary& s = run.entry.summary = summarize(run.results);
    if (handbook != nullptr) run.entry.behaviors = behavior_use(run.results, *handbook);
    log_info("eval {}: accuracy {:.1f}% ({}/{}), mean {:.1f} tokens, mean {:.2f} steps, pattern use {:.1f}% "
              "in {:.1f} s",
              run.entry.role, 100.0 * s.accuracy, s.correct, run.results.size(), s.mean_generated_tokens,
              s.mean_reasoning_steps, 100.0 * s.pattern_use_rate, watch.seconds());
  }
  return run;
}

void write_answers(const std::vector<EntryRun>& runs, const Handbook* handbook, const std::string& path) {
  AtomicFile answers(path);  // every write checked
  for (const EntryRun& run : runs) {
    for (const auto& result : run.results) {
      answers.write(result.answer_line(run.entry.role, handbook)
                        .to_json()
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                    '\n');
    }
  }
  answers.commit();
}

}  // namespace

EvalFile run_evaluation(const EvalRunOptions& options, Communicator& communicator) {
  const bool leader = communicator.rank() == 0;
  Stopwatch wall;
  if (!options.run_checkpoints.empty() && !is_checkpoint_path(options.run_checkpoints)) {
    throw UsageError(fmt::format("give the model with --model (eval.model); '{}' has no checkpoint",
                                 options.run_checkpoints));
  }
  if (options.questions.empty()) throw UsageError("give the held-out questions with --questions (eval.questions)");
  if (options.models.empty()) throw UsageError("give the model with --model (eval.model)");

  QuestionSet questions = read_questions(options.questions, options.limit);
  if (questions.questions.empty()) throw InputError(fmt::format("{}: no usable questions", options.questions));

  // The handbook: for prompts (as augment built them) and for pattern use.
  std::string handbook_path = options.handbook;
  if (options.handbook_if_exists && !fs::exists(handbook_path)) handbook_path.clear();
  std::optional<Handbook> handbook;
  if (!handbook_path.empty()) handbook = read_handbook(handbook_path);
  const Handbook* handbook_pointer = handbook ? &*handbook : nullptr;
  const AugmentMode mode = parse_augment_mode(options.augment_mode);
  const bool any_patterns =
      std::any_of(options.models.begin(), options.models.end(), [](const EvalModel& m) { return m.patterns; });
  // Used mode retrieves with each pattern's context: the training examples that use it.
  std::optional<PatternContexts> contexts;
  if (mode == AugmentMode::kUsed && handbook && any_patterns) {
    contexts = read_pattern_contexts(options.contexts, *handbook);
  }
  const PromptPolicy with_patterns(handbook_pointer, mode, options.top_k, options.bm25_k1, options.bm25_b,
                                            contexts ? &*contexts : nullptr);
  const PromptPolicy without_patterns(nullptr, AugmentMode::kNone, 0, options.bm25_k1,
                                               options.bm25_b);
  PatternMatcher matcher(handbook ? handbook->patterns : std::vector<Pattern>{});

  std::vector<EntryRun> runs;
  for (const EvalModel& model : options.models) {
    const bool patterns = model.patterns && with_patterns.carries_patterns();
    runs.push_back(evaluate_entry(model, patterns, options, questions.questions,
                                  patterns ? with_patterns : without_patterns, matcher, handbook_pointer,
                                  communicator));
  }

  EvalFile file;
  if (leader) {
    fs::create_directories(options.out_dir);
    const std::string& answers_path = options.answers;
    write_answers(runs, handbook_pointer, answers_path);
    file.questions_file = options.questions;
    file.questions = static_cast<std::int64_t>(questions.questions.size());
    file.bad_records = questions.bad_records;
    file.greedy = options.generation.greedy;
    file.temperature = options.generation.temperature;
    file.top_p = options.generation.top_p;
    file.seed = options.generation.seed;
    file.max_new_tokens = options.generation.max_new_tokens;
    file.prompt_patterns = any_patterns && handbook_pointer != nullptr;
    file.augment_mode = options.augment_mode;
    file.top_k = static_cast<std::int64_t>(options.top_k);
    if (contexts) file.contexts = options.contexts;
    file.handbook = handbook_path;
    file.handbook_patterns = handbook ? static_cast<std::int64_t>(handbook->patterns.size()) : 0;
    file.definitions = metric_definitions();
    const EntryRun* baseline = nullptr;
    for (const EntryRun& run : runs) {
      if (run.entry.role == "baseline") baseline = &run;
    }
    for (const EntryRun& run : runs) {
      file.models.push_back(run.entry);
      if (baseline == nullptr || &run == baseline) continue;
      file.models.back().change_vs_baseline = SummaryChange::between(run.entry.summary, baseline->entry.summary);
      // The first other entry against the baseline (the report's "relative change" row).
      if (!file.relative_change) {
        file.relative_change = file.models.back().change_vs_baseline;
        file.relative_change_of = run.entry.role;
      }
    }
    file.answers = fs::path(options.answers).filename().string();  // beside eval.json
    file.ranks = communicator.size();
    file.wall_seconds = wall.seconds();
    const std::string& eval_path = options.eval_file;
    write_eval_file(file, eval_path);
    std::cout << format_eval_table(file);
    log_info("wrote {} and {}", eval_path, answers_path);
  }
  communicator.barrier();
  return file;
}

std::string format_eval_table(const EvalFile& file) {
  std::string table = fmt::format("{:<10} {:>9} {:>12} {:>13} {:>16} {:>11} {:>12}\n", "model", "accuracy",
                                  "mean tokens", "median tokens", "reasoning tokens", "mean steps", "pattern use");
  for (const EvalModelEntry& entry : file.models) {
    const Summary& s = entry.summary;
    table += fmt::format("{:<10} {:>8.1f}% {:>12.1f} {:>13.1f} {:>16.1f} {:>11.2f} {:>11.1f}%\n", entry.role,
                         100.0 * s.accuracy, s.mean_generated_tokens, s.median_generated_tokens,
                         s.mean_reasoning_tokens, s.mean_reasoning_steps, 100.0 * s.pattern_use_rate);
  }
  auto percent = [](const std::optional<double>& value) {
    return value ? fmt::format("{:+.1f}%", 100.0 * *value) : std::string("n/a");
  };
  for (const EvalModelEntry& entry : file.models) {
    if (!entry.change_vs_baseline) continue;
    const SummaryChange& change = *entry.change_vs_baseline;
    table += fmt::format("change vs baseline ({}): accuracy {:+.1f} points, reasoning tokens {}, mean tokens {}, mean "
                         "steps {}\n",
                         entry.role, change.accuracy_points.value_or(0.0), percent(change.mean_reasoning_tokens),
                         percent(change.mean_generated_tokens), percent(change.mean_reasoning_steps));
  }
  return table;
}

}  // namespace metareuse
