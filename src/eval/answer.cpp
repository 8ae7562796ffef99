// Answer extraction, normalisation, step counting, pattern matching, question files.
#include "metareuse/eval/answer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/text.h"
#include "metareuse/patterns/text.h"

namespace metareuse {
namespace {

std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

}  // namespace

std::optional<std::string> extract_final_answer(std::string_view text) {
  if (auto answer = extract_answer(text, AnswerRule::kHashes)) return answer;
  return extract_answer(text, AnswerRule::kBoxed);
}

AnswerCheck check_answer(std::string_view output, std::string_view reference, AnswerRule rule) {
  AnswerCheck check;
  check.strict_answer = extract_answer(output, rule);
  check.strict = check.strict_answer && answers_match(*check.strict_answer, reference);
  check.flexible_answer = extract_answer(output, AnswerRule::kLastNumber);
  check.flexible = check.flexible_answer && answers_match(*check.flexible_answer, reference);
  return check;
}

std::string normalize_answer(std::string_view answer) {
  std::string out;
  for (char c : trim_ascii(answer)) {
    if (c == '$' || c == ',' || c == ' ' || c == '\t') continue;
    out.push_back(c);
  }
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool answers_match(std::string_view predicted, std::string_view reference) {
  std::string a = normalize_answer(predicted), b = normalize_answer(reference);
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  auto x = parse_number(a), y = parse_number(b);
  return x && y && std::abs(*x - *y) <= 1e-9 * std::max(1.0, std::abs(*y));
}

std::string_view reasoning_part(std::string_view text) {
  std::size_t cut = text.rfind("####");
  if (cut == std::string_view::npos) {
    if (const std::optional<BoxedAt> boxed = last_boxed(text)) cut = boxed->start;
  }
  return cut == std::string_view::npos ? text : text.substr(0, cut);
}

std::int64_t count_reasoning_steps(std::string_view text) {
  std::int64_t steps = 0;
  split_seed_sentences(reasoning_part(text), [&](std::string_view sentence) {
    if (!sentence.empty()) ++steps;
  });
  return steps;
}

PatternMatcher::PatternMatcher(const std::vector<Pattern>& patterns) {
  normalized_.reserve(patterns.size());
  for (const auto& pattern : patterns) {
    normalized_.push_back(normalize(pattern.text));
    names_.push_back(pattern.name);
  }
}

std::vector<std::size_t> PatternMatcher::find(std::string_view text) const {
  const std::string normalized = normalize(text);
  std::vector<std::size_t> found;
  for (std::size_t i = 0; i < normalized_.size(); ++i) {
    if (!normalized_[i].empty() && contains_word_aligned(normalized, normalized_[i])) found.push_back(i);
  }
  return found;
}

QuestionSet read_questions(const std::string& path, std::int64_t limit, const FieldNames& fields) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw InputError(fmt::format("{}: cannot open the questions file: {}", path, why_unreadable(path)));
  }
  ReadOptions read;
  read.fields = fields;
  read.require_reasoning = false;
  QuestionSet set;
  auto skip = [&](std::uint64_t line, const std::string& why) {
    if (++set.bad_records <= 10) log_warn("{}:{}: skipped: {}", path, line, why);
  };
  read_file_records(
      path, read,
      [&](const Record& record) {
        if (normalize_answer(record.solution).empty()) {
          skip(record_key_line(record.key), "the reference answer is empty");
          return true;
        }
        Question question;
        question.line = static_cast<std::int64_t>(record_key_line(record.key));
        question.question = std::string(record.question);
        question.reference = std::string(record.solution);
        question.reference_reasoning = std::string(record.reasoning);
        question.answer_rule = record.answer_rule;
        set.questions.push_back(std::move(question));
        return limit <= 0 || static_cast<std::int64_t>(set.questions.size()) < limit;
      },
      skip);
  return set;
}

std::string answer_rules_of(const std::vector<Question>& questions) {
  std::set<AnswerRule> rules;
  for (const Question& question : questions) rules.insert(question.answer_rule);
  std::vector<std::string> names;
  for (AnswerRule rule : rules) names.emplace_back(answer_rule_name(rule));
  return fmt::format("{}", fmt::join(names, ", "));
}

double mean_of(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  double sum = 0.0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double median_of(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  std::size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

std::optional<double> relative_change(double value, double baseline) {
  if (baseline == 0.0) return std::nullopt;
  return (value - baseline) / baseline;
}

}  // namespace metareuse
