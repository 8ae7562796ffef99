// eval.json and answers.jsonl: the writer's structs, to and from JSON.
#include "metareuse/eval/eval_file.h"

#include <fmt/format.h>

#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/json_lines.h"
#include "metareuse/corpus/answer_rule.h"  // the flexible rule's name
#include "metareuse/eval/answer.h"         // relative_change

namespace metareuse {
using json = nlohmann::json;
using ordered = nlohmann::ordered_json;

namespace {

ordered optional_number(const std::optional<double>& value) { return value ? ordered(*value) : ordered(nullptr); }

std::optional<double> read_optional(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

ordered string_or_null(const std::string& text) { return text.empty() ? ordered(nullptr) : ordered(text); }

std::string read_string(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::vector<std::string> read_strings(const json& j, const char* key) {
  std::vector<std::string> strings;
  if (!j.contains(key) || !j[key].is_array()) return strings;
  for (const json& item : j[key]) {
    if (item.is_string()) strings.push_back(item.get<std::string>());
  }
  return strings;
}

// Summary's figures after "questions" and "correct", in eval.json's order.
struct SummaryFigure {
  const char* name;
  double Summary::*figure;
};
const SummaryFigure kSummaryFigures[] = {
    {"accuracy", &Summary::accuracy},
    {"accuracy_flexible", &Summary::accuracy_flexible},
    {"answered_rate", &Summary::answered_rate},
    {"mean_generated_tokens", &Summary::mean_generated_tokens},
    {"median_generated_tokens", &Summary::median_generated_tokens},
    {"mean_prompt_tokens", &Summary::mean_prompt_tokens},
    {"mean_total_tokens", &Summary::mean_total_tokens},
    {"mean_reasoning_tokens", &Summary::mean_reasoning_tokens},
    {"median_reasoning_tokens", &Summary::median_reasoning_tokens},
    {"mean_reasoning_steps", &Summary::mean_reasoning_steps},
    {"median_reasoning_steps", &Summary::median_reasoning_steps},
    {"pattern_use_rate", &Summary::pattern_use_rate},
    {"mean_patterns_per_answer", &Summary::mean_patterns_per_answer},
    {"stopped_rate", &Summary::stopped_rate},
    {"seconds", &Summary::seconds},
    {"tokens_per_s", &Summary::tokens_per_s},
};

// The figures compared with the baseline, in eval.json's order (accuracy_points follows them).
struct ComparedFigure {
  const char* name;
  double Summary::*figure;
  std::optional<double> SummaryChange::*change;
};
const ComparedFigure kComparedFigures[] = {
    {"accuracy", &Summary::accuracy, &SummaryChange::accuracy},
    {"accuracy_flexible", &Summary::accuracy_flexible, &SummaryChange::accuracy_flexible},
    {"mean_generated_tokens", &Summary::mean_generated_tokens, &SummaryChange::mean_generated_tokens},
    {"median_generated_tokens", &Summary::median_generated_tokens, &SummaryChange::median_generated_tokens},
    {"mean_prompt_tokens", &Summary::mean_prompt_tokens, &SummaryChange::mean_prompt_tokens},
    {"mean_total_tokens", &Summary::mean_total_tokens, &SummaryChange::mean_total_tokens},
    {"mean_reasoning_tokens", &Summary::mean_reasoning_tokens, &SummaryChange::mean_reasoning_tokens},
    {"median_reasoning_tokens", &Summary::median_reasoning_tokens, &SummaryChange::median_reasoning_tokens},
    {"mean_reasoning_steps", &Summary::mean_reasoning_steps, &SummaryChange::mean_reasoning_steps},
    {"median_reasoning_steps", &Summary::median_reasoning_steps, &SummaryChange::median_reasoning_steps},
    {"pattern_use_rate", &Summary::pattern_use_rate, &SummaryChange::pattern_use_rate},
    {"mean_patterns_per_answer", &Summary::mean_patterns_per_answer, &SummaryChange::mean_patterns_per_answer},
};

}  // namespace

ordered Summary::to_json() const {
  ordered j;
  j["questions"] = questions;
  j["correct"] = correct;
  j["failed"] = failed;
  j["correct_flexible"] = correct_flexible;
  for (const SummaryFigure& f : kSummaryFigures) j[f.name] = this->*f.figure;
  return j;
}

Summary Summary::from_json(const json& j) {
  Summary s;
  if (!j.is_object()) return s;
  s.questions = static_cast<std::int64_t>(read_optional(j, "questions").value_or(0.0));
  s.correct = static_cast<std::int64_t>(read_optional(j, "correct").value_or(0.0));
  s.failed = static_cast<std::int64_t>(read_optional(j, "failed").value_or(0.0));
  s.correct_flexible = static_cast<std::int64_t>(read_optional(j, "correct_flexible").value_or(0.0));
  for (const SummaryFigure& f : kSummaryFigures) s.*f.figure = read_optional(j, f.name).value_or(0.0);
  return s;
}

ordered BehaviorUse::to_json() const {
  auto number = [](const std::optional<double>& value) { return value ? ordered(*value) : ordered(nullptr); };
  return {{"name", name},
          {"instruction", instruction},
          {"retrieved", retrieved},
          {"applied", applied},
          {"accuracy_applied", number(accuracy_applied)},
          {"accuracy_not_applied", number(accuracy_not_applied)},
          {"mean_reasoning_tokens_applied", number(mean_reasoning_tokens_applied)},
          {"mean_reasoning_tokens_not_applied", number(mean_reasoning_tokens_not_applied)}};
}

BehaviorUse BehaviorUse::from_json(const json& j) {
  BehaviorUse use;
  if (!j.is_object()) return use;
  use.name = j.value("name", std::string());
  use.instruction = j.value("instruction", std::string());
  use.retrieved = j.value("retrieved", std::int64_t{0});
  use.applied = j.value("applied", std::int64_t{0});
  use.accuracy_applied = read_optional(j, "accuracy_applied");
  use.accuracy_not_applied = read_optional(j, "accuracy_not_applied");
  use.mean_reasoning_tokens_applied = read_optional(j, "mean_reasoning_tokens_applied");
  use.mean_reasoning_tokens_not_applied = read_optional(j, "mean_reasoning_tokens_not_applied");
  return use;
}

SummaryChange SummaryChange::between(const Summary& model, const Summary& baseline) {
  SummaryChange c;
  for (const ComparedFigure& f : kComparedFigures) c.*f.change = relative_change(model.*f.figure, baseline.*f.figure);
  c.accuracy_points = 100.0 * (model.accuracy - baseline.accuracy);
  return c;
}

ordered SummaryChange::to_json() const {
  ordered j;
  for (const ComparedFigure& f : kComparedFigures) j[f.name] = optional_number(this->*f.change);
  j["accuracy_points"] = optional_number(accuracy_points);
  return j;
}

SummaryChange SummaryChange::from_json(const json& j) {
  SummaryChange c;
  if (!j.is_object()) return c;
  for (const ComparedFigure& f : kComparedFigures) c.*f.change = read_optional(j, f.name);
  c.accuracy_points = read_optional(j, "accuracy_points");
  return c;
}

std::vector<std::pair<std::string, std::string>> metric_definitions() {
  return {{"accuracy", "strict: the final answer by the questions' rule (answer_rule.strict: after the last '####', "
                       "in the last \\boxed{}, or the last number), normalised (no '$', ',', white space or "
                       "trailing '.'; numbers compared by value), equals the reference"},
          {"accuracy_flexible", "flexible: the last number in the output, normalised, equals the reference (as "
                                "lm-evaluation-harness's flexible-extract for GSM8K)"},
          {"generated_tokens", "tokens generated before the stop token (<|eot_id|> for chat, eos for plain)"},
          {"reasoning_tokens", "tokens of the reasoning part (the output before the final '####' or \\boxed), "
                               "re-encoded with the model's tokenizer"},
          {"reasoning_steps", "non-empty sentences of the text before the final answer: cut at newlines and after "
                              ".!? followed by white space"},
          {"pattern_use_rate", "share of answers whose normalised text contains at least one handbook pattern "
                               "word-aligned"}};
}

const EvalModelEntry* EvalFile::find(const std::string& role) const {
  for (const EvalModelEntry& entry : models) {
    if (entry.role == role) return &entry;
  }
  return nullptr;
}

std::string EvalFile::definition(const std::string& name, const std::string& fallback) const {
  for (const auto& [key, text] : definitions) {
    if (key == name) return text;
  }
  return fallback;
}

ordered EvalFile::to_json() const {
  ordered document;
  document["format"] = kEvalFormat;
  document["version"] = kEvalVersion;
  document["questions_file"] = questions_file;
  document["questions"] = questions;
  document["bad_records"] = bad_records;
  document["answer_rule"] = {{"strict", answer_rule}, {"flexible", answer_rule_name(AnswerRule::kLastNumber)}};
  document["generation"] = {{"greedy", greedy},
                            {"temperature", greedy ? ordered(nullptr) : ordered(temperature)},
                            {"top_p", greedy ? ordered(nullptr) : ordered(top_p)},
                            {"seed", seed},
                            {"max_new_tokens", max_new_tokens}};
  document["prompt"] = {{"patterns", prompt_patterns},
                        {"augment_mode", augment_mode},
                        {"top_k", top_k},
                        {"contexts", string_or_null(contexts)}};
  document["handbook"] = string_or_null(handbook);
  document["handbook_patterns"] = handbook_patterns;
  ordered meanings = ordered::object();
  for (const auto& [name, text] : definitions) meanings[name] = text;
  document["definitions"] = meanings;
  ordered entries = ordered::object();
  for (const EvalModelEntry& entry : models) {
    ordered& j = entries[entry.role];
    j = {{"path", entry.path},
         {"source", entry.source},
         {"prompt_patterns", entry.prompt_patterns},
         {"tokenizer", entry.tokenizer},
         {"template", entry.template_name},
         {"summary", entry.summary.to_json()}};
    if (entry.change_vs_baseline) j["change_vs_baseline"] = entry.change_vs_baseline->to_json();
    ordered behaviors = ordered::array();
    for (const BehaviorUse& use : entry.behaviors) behaviors.push_back(use.to_json());
    j["behaviors"] = behaviors;
  }
  document["models"] = entries;
  if (relative_change) {
    document["relative_change"] = relative_change->to_json();
    document["relative_change_of"] = relative_change_of;
  }
  document["answers"] = answers;
  document["ranks"] = ranks;
  document["wall_seconds"] = wall_seconds;
  return document;
}

EvalFile EvalFile::from_json(const json& document, const std::string& source) {
  if (!document.is_object() || !document.contains("models") || !document["models"].is_object()) {
    throw InputError(fmt::format("{}: not an eval file (no \"models\" object)", source));
  }
  if (document.contains("format") && document["format"] != kEvalFormat) {
    throw InputError(fmt::format("{}: not an eval file (format is not \"{}\")", source, kEvalFormat));
  }
  EvalFile file;
  file.questions_file = read_string(document, "questions_file");
  file.questions = document.value("questions", std::int64_t{0});
  file.bad_records = document.value("bad_records", std::int64_t{0});
  file.answer_rule = read_string(document.value("answer_rule", json::object()), "strict");
  const json generation = document.value("generation", json::object());
  file.greedy = generation.value("greedy", true);
  file.temperature = read_optional(generation, "temperature").value_or(1.0);
  file.top_p = read_optional(generation, "top_p").value_or(1.0);
  file.seed = generation.value("seed", std::uint64_t{0});
  file.max_new_tokens = generation.value("max_new_tokens", std::int64_t{0});
  const json prompt = document.value("prompt", json::object());
  file.prompt_patterns = prompt.value("patterns", false);
  file.augment_mode = read_string(prompt, "augment_mode");
  file.top_k = prompt.value("top_k", std::int64_t{0});
  file.contexts = read_string(prompt, "contexts");
  file.handbook = read_string(document, "handbook");
  file.handbook_patterns = document.value("handbook_patterns", std::int64_t{0});
  if (document.contains("definitions") && document["definitions"].is_object()) {
    for (auto it = document["definitions"].begin(); it != document["definitions"].end(); ++it) {
      if (it->is_string()) file.definitions.emplace_back(it.key(), it->get<std::string>());
    }
  }
  // nlohmann::json keeps keys sorted: the entries come back by role name.
  for (auto it = document["models"].begin(); it != document["models"].end(); ++it) {
    if (!it->is_object()) continue;
    EvalModelEntry entry;
    entry.role = it.key();
    entry.path = read_string(*it, "path");
    entry.source = read_string(*it, "source");
    entry.prompt_patterns = it->value("prompt_patterns", false);
    entry.tokenizer = read_string(*it, "tokenizer");
    entry.template_name = read_string(*it, "template");
    entry.summary = Summary::from_json(it->value("summary", json::object()));
    if (it->contains("change_vs_baseline")) entry.change_vs_baseline = SummaryChange::from_json((*it)["change_vs_baseline"]);
    for (const json& use : it->value("behaviors", json::array())) entry.behaviors.push_back(BehaviorUse::from_json(use));
    file.models.push_back(std::move(entry));
  }
  if (document.contains("relative_change") && document["relative_change"].is_object()) {
    file.relative_change = SummaryChange::from_json(document["relative_change"]);
  }
  file.relative_change_of = document.value("relative_change_of", std::string("model"));
  file.answers = read_string(document, "answers");
  file.ranks = document.value("ranks", std::int64_t{1});
  file.wall_seconds = read_optional(document, "wall_seconds").value_or(0.0);
  return file;
}

void write_eval_file(const EvalFile& file, const std::string& path) {
  write_file_atomic(path, file.to_json().dump(2) + '\n');
}

std::optional<EvalFile> read_eval_file(const std::string& path) {
  std::ifstream in(path);
  if (path.empty() || !in) return std::nullopt;
  try {
    return EvalFile::from_json(json::parse(in), path);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

ordered AnswerRecord::to_json() const {
  ordered j;
  j["model"] = model;
  j["index"] = index;
  j["line"] = line;
  if (!id.empty()) j["id"] = id;
  j["question"] = question;
  j["reference"] = reference;
  j["answer"] = answer ? ordered(*answer) : ordered(nullptr);
  j["correct"] = correct;
  j["flexible_answer"] = flexible_answer ? ordered(*flexible_answer) : ordered(nullptr);
  j["correct_flexible"] = correct_flexible;
  j["prompt_tokens"] = prompt_tokens;
  j["generated_tokens"] = generated_tokens;
  j["reasoning_tokens"] = reasoning_tokens;
  j["stopped"] = stopped ? "stop_token" : "max_new_tokens";
  j["reasoning_steps"] = reasoning_steps;
  j["patterns_shown"] = patterns_shown;
  j["patterns_used"] = patterns_used;
  j["seconds"] = seconds;
  if (!error.empty()) j["error"] = error;
  j["prompt"] = prompt;
  j["output"] = output;
  return j;
}

std::string AnswerRecord::to_line() const {
  return to_json().dump(-1, ' ', false, ordered::error_handler_t::replace) + "\n";
}

AnswerRecord AnswerRecord::from_json(const json& j) {
  AnswerRecord a;
  if (!j.is_object()) return a;
  a.model = j.value("model", std::string("model"));
  a.index = j.value("index", std::int64_t{0});
  a.line = j.value("line", std::int64_t{0});
  a.id = read_string(j, "id");
  a.question = read_string(j, "question");
  a.reference = read_string(j, "reference");
  if (j.contains("answer") && j["answer"].is_string()) a.answer = j["answer"].get<std::string>();
  a.correct = j.value("correct", false);
  if (j.contains("flexible_answer") && j["flexible_answer"].is_string()) {
    a.flexible_answer = j["flexible_answer"].get<std::string>();
  }
  a.correct_flexible = j.value("correct_flexible", false);
  a.prompt_tokens = j.value("prompt_tokens", std::int64_t{0});
  a.generated_tokens = static_cast<std::int64_t>(read_optional(j, "generated_tokens").value_or(0.0));
  a.reasoning_tokens = j.value("reasoning_tokens", std::int64_t{0});
  a.stopped = read_string(j, "stopped") == "stop_token";
  a.reasoning_steps = static_cast<std::int64_t>(read_optional(j, "reasoning_steps").value_or(0.0));
  a.patterns_shown = read_strings(j, "patterns_shown");
  a.patterns_used = read_strings(j, "patterns_used");
  a.seconds = read_optional(j, "seconds").value_or(0.0);
  a.error = read_string(j, "error");
  a.prompt = read_string(j, "prompt");
  a.output = read_string(j, "output");
  return a;
}

AnswerRecords read_answer_records(const std::string& path) {
  AnswerRecords answers;
  const JsonLinesRead read = read_json_lines(path, [&](const json& record) {
    if (record.is_object()) answers.records.push_back(AnswerRecord::from_json(record));
  });
  answers.found = read.found;
  answers.bad = read.bad;
  return answers;
}

}  // namespace metareuse
