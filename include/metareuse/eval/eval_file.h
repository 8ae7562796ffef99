// What eval writes: eval.json (one EvalFile) and answers.jsonl (one
// AnswerRecord per question and model), owned here; report.html and the tests
// read them through these structs. Torch-free.
//
// eval.json, in key order:
//   format "metareuse.eval", version 1, questions_file, questions, bad_records,
//   answer_rule {strict, flexible} (how answers are found, corpus/answer_rule.h),
//   generation {greedy, temperature, top_p, seed, max_new_tokens} (temperature
//   and top_p null when greedy), prompt {patterns, augment_mode, top_k, contexts},
//   handbook, handbook_patterns, definitions {name: text},
//   models {role: {path, source, prompt_patterns, tokenizer, template, summary,
//   change_vs_baseline (not for the baseline), behaviors [BehaviorUse]}}, relative_change and
//   relative_change_of (the first entry against the baseline, when there is
//   one), answers, ranks, wall_seconds.
#pragma once

#include <nlohmann/json.hpp>  // the file formats

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace metareuse {

inline constexpr const char* kEvalFormat = "metareuse.eval";
inline constexpr int kEvalVersion = 1;

// One model's figures over the questions (summarize() in evaluate.h).
struct Summary {
  std::int64_t questions = 0;
  std::int64_t correct = 0;
  std::int64_t failed = 0;  // questions whose generation failed (counted as wrong)
  std::int64_t correct_flexible = 0;  // by the last number in the output
  double accuracy = 0;                // strict: by the question's own rule
  double accuracy_flexible = 0;
  double answered_rate = 0;  // answers with a final answer to compare
  double mean_generated_tokens = 0;
  double median_generated_tokens = 0;
  double mean_prompt_tokens = 0;  // what the model read: handbook patterns in the prompt cost tokens too
  double mean_total_tokens = 0;   // prompt + generated
  double mean_reasoning_tokens = 0;
  double median_reasoning_tokens = 0;
  double mean_reasoning_steps = 0;
  double median_reasoning_steps = 0;
  double pattern_use_rate = 0;
  double mean_patterns_per_answer = 0;
  double stopped_rate = 0;  // answers that ended with the stop token
  double seconds = 0;       // summed over questions (all ranks)
  double tokens_per_s = 0;

  nlohmann::ordered_json to_json() const;
  // A missing figure reads as 0.
  static Summary from_json(const nlohmann::json& j);
};

// (model - baseline) / baseline of each figure; nullopt where the baseline is 0
// (null in the file). accuracy_points is the accuracy difference in points.
struct SummaryChange {
  std::optional<double> accuracy;
  std::optional<double> accuracy_flexible;
  std::optional<double> mean_generated_tokens;
  std::optional<double> median_generated_tokens;
  std::optional<double> mean_prompt_tokens;
  std::optional<double> mean_total_tokens;
  std::optional<double> mean_reasoning_tokens;
  std::optional<double> median_reasoning_tokens;
  std::optional<double> mean_reasoning_steps;
  std::optional<double> median_reasoning_steps;
  std::optional<double> pattern_use_rate;
  std::optional<double> mean_patterns_per_answer;
  std::optional<double> accuracy_points;

  static SummaryChange between(const Summary& model, const Summary& baseline);
  nlohmann::ordered_json to_json() const;
  static SummaryChange from_json(const nlohmann::json& j);
};

// One handbook behavior in one entry's answers (behavior_use() in evaluate.h).
// "Applied": the answer contains the behavior's pattern (the matcher's rule).
// The means are over the answers that applied it and those that did not;
// null in the file (nullopt) when there are none.
struct BehaviorUse {
  std::string name;
  std::string instruction;
  std::int64_t retrieved = 0;  // prompts that carried it
  std::int64_t applied = 0;    // answers that applied it
  std::optional<double> accuracy_applied;
  std::optional<double> accuracy_not_applied;
  std::optional<double> mean_reasoning_tokens_applied;
  std::optional<double> mean_reasoning_tokens_not_applied;

  nlohmann::ordered_json to_json() const;
  static BehaviorUse from_json(const nlohmann::json& j);
};

struct EvalModelEntry {
  std::string role;  // "model", "baseline", "control", or an experiment's names
  std::string path;
  std::string source;  // the model source's description
  bool prompt_patterns = false;
  std::string tokenizer;
  std::string template_name;
  Summary summary;
  std::optional<SummaryChange> change_vs_baseline;
  std::vector<BehaviorUse> behaviors;  // handbook order; empty without a handbook
};

struct EvalFile {
  std::string questions_file;
  std::int64_t questions = 0;
  std::int64_t bad_records = 0;
  std::string answer_rule;  // the strict rule(s) of the questions ("####", "\boxed{}", ...); the flexible one is fixed
  bool greedy = true;
  double temperature = 1.0;  // null in the file when greedy
  double top_p = 1.0;        // null in the file when greedy
  std::uint64_t seed = 0;
  std::int64_t max_new_tokens = 0;
  bool prompt_patterns = false;  // some entry's prompts carry patterns
  std::string augment_mode;
  std::int64_t top_k = 0;
  std::string contexts;  // used mode's augmented examples; "" (null) otherwise
  std::string handbook;  // "" (null): none
  std::int64_t handbook_patterns = 0;
  std::vector<std::pair<std::string, std::string>> definitions;  // metric name, what it means
  std::vector<EvalModelEntry> models;                            // in evaluation order
  std::optional<SummaryChange> relative_change;
  std::string relative_change_of;
  std::string answers;  // the answers file, relative to eval.json's folder
  std::int64_t ranks = 1;
  double wall_seconds = 0;

  const EvalModelEntry* find(const std::string& role) const;
  // The definition of `name`, or `fallback` when the file has none.
  std::string definition(const std::string& name, const std::string& fallback) const;

  nlohmann::ordered_json to_json() const;
  // Lenient, for files written by older builds or by hand: a missing field
  // keeps its default. Throws InputError naming `source` when "models" is not an object.
  static EvalFile from_json(const nlohmann::json& document, const std::string& source);
};

// What each eval.json figure means (written into every file's "definitions").
std::vector<std::pair<std::string, std::string>> metric_definitions();

void write_eval_file(const EvalFile& file, const std::string& path);
// nullopt when `path` is missing or unreadable, or not an eval file.
std::optional<EvalFile> read_eval_file(const std::string& path);

// One answer: a model's to one question. The one record of an answer
// everywhere: a line of eval's answers.jsonl, what ranks exchange after a
// batch, a line of eval's and distill's answer logs. to_json is its only wire
// form and from_json reads it back whole.
struct AnswerRecord {
  std::string model = "model";  // the eval entry's role ("model", "baseline", ...); distill: "teacher"
  std::int64_t index = 0;  // eval: the question's place in the questions file (bad lines skipped);
                           // distill: the item, question x samples + sample
  std::int64_t line = 0;   // the question's 1-based line in its file
  std::string id;          // distill: the corpus record, "train.jsonl:17" (in the file only when set)
  std::string question;
  std::string reference;   // the reference final answer
  std::string prompt;      // the prompt text
  std::string output;      // decoded, without the stop token
  std::optional<std::string> answer;  // the extracted final answer
  bool correct = false;
  std::optional<std::string> flexible_answer;  // the last number of the output
  bool correct_flexible = false;
  std::int64_t prompt_tokens = 0;
  std::int64_t generated_tokens = 0;  // without the stop token
  std::int64_t reasoning_tokens = 0;  // of the reasoning part (answer.h), re-encoded
  bool stopped = false;  // ended with a stop token: "stop_token" in the file, else "max_new_tokens"
  std::int64_t reasoning_steps = 0;
  std::vector<std::string> patterns_shown;  // names of the handbook patterns its prompt carried
  std::vector<std::string> patterns_used;   // names of those its output uses
  double seconds = 0;
  std::string error;  // why its generation failed; in the file only when it did

  nlohmann::ordered_json to_json() const;
  // Lenient like EvalFile::from_json: a missing key keeps its default.
  static AnswerRecord from_json(const nlohmann::json& j);
  // to_json as one JSON Lines line, "...\n" (invalid UTF-8 replaced).
  std::string to_line() const;
};

// An answers file; bad lines are counted, not fatal.
struct AnswerRecords {
  std::vector<AnswerRecord> records;
  std::int64_t bad = 0;
  bool found = false;
};
AnswerRecords read_answer_records(const std::string& path);

}  // namespace metareuse
