// The eval stage: each entry's model (load_answering_model), the
// answers, and eval.json / answers.jsonl.
#include "metareuse/eval/run_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "metareuse/augment/prompt.h"
#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/core/answer_log.h"
#include "metareuse/distributed/rounds.h"
#include "metareuse/eval/evaluate.h"
#include "metareuse/tokenizer/prompt_format.h"

namespace metareuse {
namespace fs = std::filesystem;

namespace {

// One entry: its eval.json entry and its answers, in question order (rank 0).
struct EntryRun {
  EvalModelEntry entry;
  std::vector<AnswerRecord> results;  // rank 0
};

}  // namespace

namespace {

// What the answer log's first line records: answers read back are reused
// only when they came from these models with these questions and options.
nlohmann::json answers_header(const EvalRunOptions& options, const std::vector<bool>& entry_patterns,
                              const std::string& handbook_path, bool contexts_used) {
  nlohmann::json models = nlohmann::json::array();
  for (std::size_t e = 0; e < options.models.size(); ++e) {
    const EvalModel& model = options.models[e];
    models.push_back({{"role", model.role},
                      {"patterns", entry_patterns[e]},
                      {"model", answer_log_model(model.path, open_model_or_checkpoint(model.path)->description())}});
  }
  return {{"eval", 2},
          {"models", models},
          {"questions", answer_log_file(options.questions)},
          {"limit", options.limit},
          {"handbook", handbook_path.empty() ? nlohmann::json(nullptr) : answer_log_file(handbook_path)},
          {"augment_mode", options.augment_mode},
          {"top_k", options.top_k},
          {"bm25_k1", options.bm25_k1},
          {"bm25_b", options.bm25_b},
          {"contexts", contexts_used ? answer_log_file(options.contexts) : nlohmann::json(nullptr)},
          {"template", options.generation.template_name},
          {"tokenizer", options.tokenizer.empty() ? nlohmann::json(nullptr) : answer_log_file(options.tokenizer)},
          {"max_new_tokens", options.generation.max_new_tokens},
          {"greedy", options.generation.greedy},
          {"temperature", options.generation.temperature},
          {"top_p", options.generation.top_p},
          {"seed", options.generation.seed}};
}

// One entry's model, loaded and checked against its tokenizer.
struct EntryModel {
  AnsweringModel answering;
  EvalOptions generation;  // its template and tokenizer
};

EntryModel load_entry(const EvalModel& model_entry, bool patterns, const EvalRunOptions& options, EntryRun& run) {
  run.entry.role = model_entry.role;
  run.entry.path = model_entry.path;
  run.entry.prompt_patterns = patterns;
  EntryModel loaded{load_answering_model(model_entry.path, options.tokenizer, options.generation.template_name),
                    options.generation};
  run.entry.source = loaded.answering.description;
  run.entry.tokenizer = loaded.answering.text.tokenizer;
  run.entry.template_name = loaded.answering.text.template_name;
  loaded.generation.template_name = run.entry.template_name;
  loaded.generation.tokenizer_path = run.entry.tokenizer;
  return loaded;
}

void summarize_entry(EntryRun& run, const Handbook* handbook, double seconds) {
  const Summary& s = run.entry.summary = summarize(run.results);
  if (handbook != nullptr) run.entry.behaviors = behavior_use(run.results, *handbook);
  log_info("eval {}: accuracy {:.1f}% ({}/{}; flexible {:.1f}%), mean {:.1f} tokens, mean {:.2f} steps, pattern use {:.1f}% "
           "in {:.1f} s{}",
           run.entry.role, 100.0 * s.accuracy, s.correct, run.results.size(), 100.0 * s.accuracy_flexible,
           s.mean_generated_tokens,
           s.mean_reasoning_steps, 100.0 * s.pattern_use_rate, seconds,
           s.failed > 0 ? fmt::format("; generation failed for {} question(s) (counted wrong; see answers.jsonl's "
                                      "\"error\")",
                                      s.failed)
                        : std::string());
}

void write_answers(const std::vector<EntryRun>& runs, const std::string& path) {
  AtomicFile answers(path);  // every write checked
  for (const EntryRun& run : runs) {
    for (const AnswerRecord& result : run.results) answers.write(result.to_line());
  }
  answers.commit();
}

}  // namespace

int run_evaluation(const EvalRunOptions& options, Communicator& communicator, EvalFile* file_out) {
  const bool leader = communicator.rank() == 0;
  Stopwatch wall;
  RoundStop round_stop(options.time_limit);
  if (!options.run_checkpoints.empty() && !is_checkpoint_path(options.run_checkpoints)) {
    throw UsageError(fmt::format("give the model with --model (eval.model); '{}' has no checkpoint",
                                 options.run_checkpoints));
  }
  if (options.questions.empty()) throw UsageError("give the held-out questions with --questions (eval.questions)");
  if (options.models.empty()) throw UsageError("give the model with --model (eval.model)");

  QuestionSet questions = read_questions(options.questions, options.limit, options.fields);
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
  std::vector<bool> entry_patterns;
  for (const EvalModel& model : options.models) {
    entry_patterns.push_back(model.patterns && with_patterns.carries_patterns());
  }

  // Items: entry e's question q is item e * questions + q.
  const auto question_count = static_cast<std::int64_t>(questions.questions.size());
  const auto total_items = static_cast<std::int64_t>(options.models.size()) * question_count;
  std::vector<EntryRun> runs(options.models.size());
  std::vector<std::map<std::int64_t, AnswerRecord>> answered(options.models.size());  // rank 0, by question
  const nlohmann::json header = answers_header(options, entry_patterns, handbook_path, contexts.has_value());
  std::vector<std::int64_t> done_items;
  if (leader) {
    for (const nlohmann::json& line : read_back_answer_log(options.partial_answers, header, "eval")) {
      AnswerRecord result = AnswerRecord::from_json(line);
      const auto entry = static_cast<std::size_t>(
          std::find_if(options.models.begin(), options.models.end(),
                       [&](const EvalModel& model) { return model.role == result.model; }) -
          options.models.begin());
      if (entry >= answered.size() || result.index < 0 || result.index >= question_count) continue;
      done_items.push_back(static_cast<std::int64_t>(entry) * question_count + result.index);
      answered[entry][result.index] = std::move(result);
    }
  }
  done_items = share_done_items(done_items, communicator);
  const std::set<std::int64_t> done(done_items.begin(), done_items.end());
  if (!done.empty()) {
    log_info("eval: {} answer(s) read back from {}; {} of {} to go", done.size(), options.partial_answers,
             total_items - static_cast<std::int64_t>(done.size()), total_items);
  }
  std::optional<AnswerLog> log;
  if (leader) log.emplace(options.partial_answers, done.empty(), header);

  const std::size_t round = round_size(communicator, options.generation.batch_size);
  for (std::size_t e = 0; e < options.models.size(); ++e) {
    EntryRun& run = runs[e];
    const EntryModel loaded = load_entry(options.models[e], entry_patterns[e], options, run);
    std::vector<std::int64_t> todo;
    for (std::int64_t q = 0; q < question_count; ++q) {
      if (done.count(static_cast<std::int64_t>(e) * question_count + q) == 0) todo.push_back(q);
    }
    log_info("eval {}: {} on {} questions ({} ranks{}); tokenizer {}, template {}", run.entry.role, run.entry.source,
             question_count, communicator.size(),
             todo.size() < static_cast<std::size_t>(question_count)
                 ? fmt::format("; {} answered before", question_count - static_cast<std::int64_t>(todo.size()))
                 : std::string(),
             run.entry.tokenizer, run.entry.template_name);
    Stopwatch watch;
    for (std::size_t first = 0; first < todo.size(); first += round) {
      if (round_stop.stop_before_round(communicator)) {
        std::int64_t answers_kept = 0;
        for (const auto& entry_answers : answered) answers_kept += static_cast<std::int64_t>(entry_answers.size());
        if (leader) {
          log_warn("eval: stopped after {} of {} answers (time limit or signal); they are kept in {}, and running "
                   "eval again goes on from there (exit status {})",
                   answers_kept, total_items, options.partial_answers, static_cast<int>(kExitTimeLimit));
        }
        return kExitTimeLimit;
      }
      const std::size_t count = std::min(round, todo.size() - first);
      const std::vector<std::int64_t> indices(todo.begin() + static_cast<std::ptrdiff_t>(first),
                                              todo.begin() + static_cast<std::ptrdiff_t>(first + count));
      std::vector<Question> round_questions;
      for (std::int64_t q : indices) round_questions.push_back(questions.questions[static_cast<std::size_t>(q)]);
      std::vector<AnswerRecord> results =
          evaluate_questions(*loaded.answering.model, *loaded.answering.tokenizer, round_questions,
                             entry_patterns[e] ? with_patterns : without_patterns, matcher, loaded.generation,
                             communicator, indices);
      if (!leader) continue;
      std::string lines;
      for (AnswerRecord& result : results) {
        result.model = run.entry.role;
        lines += result.to_line();
        answered[e][result.index] = std::move(result);
      }
      log->append(lines);
      log_debug("eval {}: {} of {} questions", run.entry.role, answered[e].size(), question_count);
    }
    if (leader) {
      for (auto& [index, result] : answered[e]) run.results.push_back(std::move(result));
      summarize_entry(run, handbook_pointer, watch.seconds());
    }
  }

  EvalFile file;
  if (leader) {
    fs::create_directories(options.out_dir);
    const std::string& answers_path = options.answers;
    write_answers(runs, answers_path);
    file.questions_file = options.questions;
    file.questions = question_count;
    file.bad_records = questions.bad_records;
    file.answer_rule = answer_rules_of(questions.questions);
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
    // Both files are whole now: the log's answers are in them.
    log.reset();
    std::error_code error;
    fs::remove(options.partial_answers, error);
    if (error) log_warn("eval: cannot remove {}: {}", options.partial_answers, error.message());
    std::cout << format_eval_table(file);
    log_info("wrote {} and {}", eval_path, answers_path);
  }
  communicator.barrier();
  if (file_out != nullptr) *file_out = std::move(file);
  return kExitOk;
}

std::string format_eval_table(const EvalFile& file) {
  std::string table = fmt::format("{:<10} {:>9} {:>9} {:>12} {:>13} {:>16} {:>13} {:>12} {:>11} {:>12}\n", "model",
                                  "accuracy", "flexible", "mean tokens", "median tokens", "reasoning tokens", "prompt tokens",
                                  "total tokens", "mean steps", "pattern use");
  for (const EvalModelEntry& entry : file.models) {
    const Summary& s = entry.summary;
    table += fmt::format("{:<10} {:>8.1f}% {:>8.1f}% {:>12.1f} {:>13.1f} {:>16.1f} {:>13.1f} {:>12.1f} {:>11.2f} {:>11.1f}%\n",
                         entry.role, 100.0 * s.accuracy, 100.0 * s.accuracy_flexible, s.mean_generated_tokens, s.median_generated_tokens,
                         s.mean_reasoning_tokens, s.mean_prompt_tokens, s.mean_total_tokens, s.mean_reasoning_steps,
                         100.0 * s.pattern_use_rate);
  }
  table += fmt::format("accuracy: strict, the answer by {}; flexible: the {} in the output\n",
                       file.answer_rule.empty() ? "the questions' rule" : file.answer_rule,
                       answer_rule_name(AnswerRule::kLastNumber));
  auto percent = [](const std::optional<double>& value) {
    return value ? fmt::format("{:+.1f}%", 100.0 * *value) : std::string("n/a");
  };
  for (const EvalModelEntry& entry : file.models) {
    if (!entry.change_vs_baseline) continue;
    const SummaryChange& change = *entry.change_vs_baseline;
    table += fmt::format("change vs baseline ({}): accuracy {:+.1f} points, reasoning tokens {}, mean tokens {}, total "
                         "tokens {}, mean steps {}\n",
                         entry.role, change.accuracy_points.value_or(0.0), percent(change.mean_reasoning_tokens),
                         percent(change.mean_generated_tokens), percent(change.mean_total_tokens),
                         percent(change.mean_reasoning_steps));
  }
  return table;
}

}  // namespace metareuse
