// Answer extraction, normalisation, step counting, pattern matching, question files.
#include "metareuse/eval/answer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/text.h"
#include "metareuse/corpus/corpus.h"  // split_gsm8k_answer
#include "metareuse/patterns/text.h"

namespace metareuse {
namespace {

constexpr std::string_view kAnswerMarker = "####";
constexpr std::string_view kBoxed = "\\boxed{";


// Position of the last "\boxed{" and the end of its balanced content, or npos.
std::pair<std::size_t, std::size_t> last_boxed(std::string_view text) {
  std::size_t start = text.rfind(kBoxed);
  if (start == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  int depth = 1;
  for (std::size_t i = start + kBoxed.size(); i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return {start, i};
  }
  return {std::string_view::npos, std::string_view::npos};  // unclosed: no answer
}

std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

}  // namespace

std::optional<std::string> extract_final_answer(std::string_view text) {
  std::size_t marker = text.rfind(kAnswerMarker);
  if (marker != std::string_view::npos) {
    std::string_view rest = text.substr(marker + kAnswerMarker.size());
    rest = rest.substr(0, rest.find('\n'));
    rest = trim_ascii(rest);
    if (!rest.empty()) return std::string(rest);
  }
  auto [start, close] = last_boxed(text);
  if (start != std::string_view::npos) {
    std::string_view content = trim_ascii(text.substr(start + kBoxed.size(), close - start - kBoxed.size()));
    if (!content.empty()) return std::string(content);
  }
  return std::nullopt;
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
  std::size_t cut = text.rfind(kAnswerMarker);
  if (cut == std::string_view::npos) cut = last_boxed(text).first;
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

QuestionSet read_questions(const std::string& path, std::int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open the questions file: {}", path, why_unreadable(path)));
  QuestionSet set;
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (trim_ascii(line).empty()) continue;
    if (limit > 0 && static_cast<std::int64_t>(set.questions.size()) >= limit) break;
    try {
      auto record = nlohmann::json::parse(line);
      if (!record.is_object()) throw InputError("the line is not a JSON object");
      auto text = [&](const char* key) -> std::string {
        auto found = record.find(key);
        if (found == record.end() || !found->is_string()) throw InputError(fmt::format("no string field \"{}\"", key));
        return found->get<std::string>();
      };
      Question question;
      question.line = number;
      question.question = text("question");
      if (record.contains("answer")) {  // GSM8K: reasoning, then "#### N"
        const std::string answer = text("answer");
        const std::optional<Gsm8kAnswer> split = split_gsm8k_answer(answer);
        if (!split) throw InputError("field \"answer\" has no \"#### <final answer>\"");
        question.reference = std::string(split->solution);
        question.reference_reasoning = std::string(split->reasoning);
      } else if (record.contains("solution")) {  // the seed's records
        const auto& solution = record["solution"];
        question.reference = solution.is_string() ? solution.get<std::string>() : solution.dump();
        if (record.contains("reasoning")) question.reference_reasoning = text("reasoning");
      } else {
        throw InputError("needs \"answer\" (GSM8K) or \"solution\" (seed records)");
      }
      if (normalize_answer(question.reference).empty()) throw InputError("the reference answer is empty");
      set.questions.push_back(std::move(question));
    } catch (const std::exception& e) {
      if (++set.bad_records <= 10) log_warn("{}:{}: skipped: {}", path, number, e.what());
    }
  }
  if (in.bad()) throw InputError(fmt::format("{}: read error", path));
  return set;
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
