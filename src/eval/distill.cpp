// The distill stage (distill.h): teacher answers with behaviors, the right ones
// kept as training examples without them.
#include "metareuse/eval/distill.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "metareuse/augment/augment.h"  // parse_augment_mode, read_pattern_contexts
#include "metareuse/augment/augmented_example.h"
#include "metareuse/augment/prompt.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/text.h"  // trim_ascii
#include "metareuse/core/timing.h"
#include "metareuse/corpus/corpus.h"  // expand_corpus_files
#include "metareuse/distributed/communicator.h"
#include "metareuse/core/answer_log.h"
#include "metareuse/distributed/rounds.h"
#include "metareuse/eval/evaluate.h"

namespace metareuse {
using json = nlohmann::json;

namespace {

// One training question and where it came from.
struct SourcedQuestion {
  Question question;
  std::string id;  // "file:line", as augment names a record
};

std::vector<SourcedQuestion> read_training_questions(const DistillOptions& options) {
  std::vector<SourcedQuestion> all;
  std::int64_t bad = 0;
  for (const std::string& file : expand_corpus_files(options.corpus_files)) {
    const std::int64_t left = options.limit > 0 ? options.limit - static_cast<std::int64_t>(all.size()) : 0;
    if (options.limit > 0 && left <= 0) break;
    QuestionSet set = read_questions(file, left, options.fields);
    bad += set.bad_records;
    for (Question& question : set.questions) {
      SourcedQuestion sourced;
      sourced.id = fmt::format("{}:{}", file, question.line);
      sourced.question = std::move(question);
      all.push_back(std::move(sourced));
    }
  }
  if (bad > 0) log_warn("distill: {} corpus line(s) skipped (no question or no final answer; see above)", bad);
  return all;
}

// What the answers file's first line records: answers read back are reused
// only when they came from this teacher (its files, sizes and times) with these options.
json answers_header(const DistillOptions& options, const std::string& teacher_description) {
  // The corpus files with their sizes and times: an answer is stored by its
  // question's place in them, so an edited corpus must not reuse it.
  json corpus = json::array();
  for (const std::string& file : expand_corpus_files(options.corpus_files)) corpus.push_back(answer_log_file(file));
  return {{"distill", 2},
          {"teacher", answer_log_model(options.teacher, teacher_description)},
          {"corpus", corpus},
          {"limit", options.limit},
          {"samples", options.samples},
          {"handbook", answer_log_file(options.handbook)},
          {"augment_mode", options.augment_mode},
          {"top_k", options.top_k},
          {"template", options.generation.template_name},
          {"tokenizer", options.tokenizer.empty() ? json(nullptr) : answer_log_file(options.tokenizer)},
          {"max_new_tokens", options.generation.max_new_tokens},
          {"greedy", options.generation.greedy},
          {"temperature", options.generation.temperature},
          {"top_p", options.generation.top_p},
          {"seed", options.generation.seed}};
}

// The training target of a right answer: its reasoning and final answer, in
// the form augment writes a corpus record's ("reasoning\n#### answer").
std::string distilled_target(const std::string& output, const std::string& answer) {
  return std::string(trim_ascii(reasoning_part(output))) + "\n#### " + std::string(trim_ascii(answer));
}

}  // namespace

void check_distill_options(const DistillOptions& options) {
  if (options.teacher.empty()) throw UsageError("give the teacher with --teacher (distill.teacher)");
  if (options.corpus_files.empty()) throw UsageError("give the training questions with --corpus (corpus.files)");
  if (options.samples < 1) throw ConfigError(fmt::format("distill.samples = {}: at least 1", options.samples));
  if (options.generation.greedy && options.samples != 1) {
    throw ConfigError(fmt::format("distill.samples = {} with greedy decoding gives the same answer {} times: set "
                                  "distill.greedy=false to sample, or distill.samples=1",
                                  options.samples, options.samples));
  }
}

int run_distill(const DistillOptions& options, Communicator& communicator, DistillCounts* counts_out) {
  check_distill_options(options);
  const bool leader = communicator.rank() == 0;
  Stopwatch wall;
  RoundStop round_stop(options.time_limit);

  const std::vector<SourcedQuestion> sourced = read_training_questions(options);
  if (sourced.empty()) {
    throw InputError(fmt::format("distill: no usable training questions in {}", fmt::join(options.corpus_files, ", ")));
  }
  const Handbook handbook = read_handbook(options.handbook);
  const AugmentMode mode = parse_augment_mode(options.augment_mode);
  std::optional<PatternContexts> contexts;
  if (mode == AugmentMode::kUsed) contexts = read_pattern_contexts(options.contexts, handbook);
  const PromptPolicy with_behaviors(&handbook, mode, options.top_k, options.bm25_k1, options.bm25_b,
                                    contexts ? &*contexts : nullptr);
  const PromptPolicy bare(nullptr, AugmentMode::kNone, 0, options.bm25_k1, options.bm25_b);
  const PatternMatcher matcher(handbook.patterns);

  const AnsweringModel teacher =
      load_answering_model(options.teacher, options.tokenizer, options.generation.template_name);
  EvalOptions generation = options.generation;
  generation.template_name = teacher.text.template_name;
  generation.tokenizer_path = teacher.text.tokenizer;
  const json header = answers_header(options, teacher.description);

  // Items: question q's sample s is item q * samples + s (its sampling seed).
  const std::int64_t total_items = static_cast<std::int64_t>(sourced.size()) * options.samples;
  std::map<std::int64_t, AnswerRecord> answers;  // rank 0, by item
  if (leader) {
    for (const json& line : read_back_answer_log(options.answers, header, "distill")) {
      AnswerRecord answer = AnswerRecord::from_json(line);
      if (answer.index < 0 || answer.index >= total_items) continue;
      const std::int64_t item = answer.index;
      answers[item] = std::move(answer);
    }
  }
  std::vector<std::int64_t> done_items;
  for (const auto& [item, line] : answers) done_items.push_back(item);
  done_items = share_done_items(done_items, communicator);
  const std::set<std::int64_t> done(done_items.begin(), done_items.end());
  std::vector<std::int64_t> todo;
  for (std::int64_t item = 0; item < total_items; ++item) {
    if (done.count(item) == 0) todo.push_back(item);
  }
  DistillCounts counts;
  counts.questions = static_cast<std::int64_t>(sourced.size());
  counts.resumed = static_cast<std::int64_t>(done.size());
  log_info("distill: teacher {} ({}; template {}) answers {} question(s) x {} sample(s) with behaviors on {} rank(s){}",
           options.teacher, teacher.description, generation.template_name, sourced.size(), options.samples,
           communicator.size(),
           done.empty() ? std::string() : fmt::format("; {} answer(s) read back from {}", done.size(), options.answers));

  std::optional<AnswerLog> log;
  if (leader) log.emplace(options.answers, answers.empty(), header);
  const std::size_t round = round_size(communicator, generation.batch_size);
  for (std::size_t first = 0; first < todo.size(); first += round) {
    if (round_stop.stop_before_round(communicator)) {
      log_warn("distill: stopped after {} of {} answers (time limit or signal); they are kept in {}, and running "
               "distill again goes on from there (exit status {})",
               total_items - static_cast<std::int64_t>(todo.size() - first), total_items, options.answers,
               static_cast<int>(kExitTimeLimit));
      return kExitTimeLimit;
    }
    const std::size_t count = std::min(round, todo.size() - first);
    std::vector<Question> questions;
    std::vector<std::int64_t> items(todo.begin() + static_cast<std::ptrdiff_t>(first),
                                    todo.begin() + static_cast<std::ptrdiff_t>(first + count));
    for (std::int64_t item : items) questions.push_back(sourced[static_cast<std::size_t>(item / options.samples)].question);
    std::vector<AnswerRecord> results = evaluate_questions(*teacher.model, *teacher.tokenizer, questions,
                                                           with_behaviors, matcher, generation, communicator, items);
    if (!leader) continue;
    std::string lines;
    for (AnswerRecord& result : results) {
      result.model = "teacher";
      result.id = sourced[static_cast<std::size_t>(result.index / options.samples)].id;
      lines += result.to_line();
      const std::int64_t item = result.index;
      answers[item] = std::move(result);
    }
    log->append(lines);
    log_info("distill: {} of {} answers", total_items - static_cast<std::int64_t>(todo.size() - first - count),
             total_items);
  }

  // Rank 0 turns the answers into examples; the others wait for its verdict.
  std::string failure;
  if (leader) {
    const PromptFormat format(*teacher.tokenizer, generation.template_name, generation.tokenizer_path);
    std::string examples;
    std::set<std::pair<std::int64_t, std::string>> seen;  // (question, target)
    for (const auto& [item, answer] : answers) {
      ++counts.generated;
      if (!answer.error.empty()) ++counts.failed;
      if (!answer.stopped) ++counts.unfinished;
      if (!answer.correct || !answer.answer) continue;
      ++counts.correct;
      const std::int64_t question_index = item / options.samples;
      const SourcedQuestion& source = sourced[static_cast<std::size_t>(question_index)];
      AugmentedExample example;
      example.id = options.samples > 1 ? fmt::format("{}#{}", source.id, item % options.samples) : source.id;
      example.question = source.question.question;
      example.solution = source.question.reference;
      example.prompt = bare.test_prompt(example.question);
      example.target = distilled_target(answer.output, *answer.answer);
      if (!seen.insert({question_index, example.target}).second) {
        ++counts.duplicates;
        continue;
      }
      if (options.max_sequence > 0 &&
          static_cast<std::int64_t>(format.training_example(example.prompt, example.target).ids.size()) >
              options.max_sequence) {
        ++counts.dropped_for_length;
        continue;
      }
      nlohmann::ordered_json written = example.to_json();
      written["teacher"] = options.teacher;
      written["shown"] = answer.patterns_shown;
      written["correct"] = true;
      examples += written.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
      ++counts.kept;
    }
    if (counts.kept == 0) {
      failure = fmt::format(
          "the teacher {} answered {} of {} question(s) right ({} answers{}), so there is no training "
          "example; {} was not written. Check the teacher (is it trained on this corpus? does it write the final "
          "answer after \"####\"?) in {}",
          options.teacher, counts.correct, counts.questions, counts.generated,
          counts.correct > 0 ? fmt::format(", all {} longer than {} tokens", counts.correct, options.max_sequence)
                             : std::string(),
          options.out, options.answers);
    } else {
      AtomicFile out(options.out);
      out.write(examples);
      out.commit();
      const double pass_rate = counts.generated > 0 ? static_cast<double>(counts.correct) / counts.generated : 0.0;
      json summary = {{"teacher", options.teacher},
                      {"teacher_source", teacher.description},
                      {"questions", counts.questions},
                      {"samples", options.samples},
                      {"generated", counts.generated},
                      {"correct", counts.correct},
                      {"pass_rate", pass_rate},
                      {"kept", counts.kept},
                      {"duplicates", counts.duplicates},
                      {"dropped_for_length", counts.dropped_for_length},
                      {"unfinished", counts.unfinished},
                      {"failed", counts.failed},
                      {"resumed", counts.resumed},
                      {"ranks", communicator.size()},
                      {"seconds", wall.seconds()},
                      {"examples", options.out},
                      {"answers", options.answers}};
      write_file_atomic(options.summary, summary.dump(2) + "\n");
      log_info("distill: {} answers, {} right ({:.1f}%), {} kept in {}, {} duplicate(s), {} dropped for length "
               "(over {} tokens), {} unfinished; {:.1f} s",
               counts.generated, counts.correct, 100.0 * pass_rate, counts.kept, options.out, counts.duplicates,
               counts.dropped_for_length, options.max_sequence, counts.unfinished, wall.seconds());
    }
  }
  const int failed = communicator.allreduce_value<std::int32_t>(failure.empty() ? 0 : 1, ReduceOp::kMax);
  if (failed != 0) throw InputError(leader ? failure : "distill: no right answer from the teacher (see rank 0)");
  if (counts_out != nullptr) *counts_out = counts;
  return kExitOk;
}

}  // namespace metareuse
