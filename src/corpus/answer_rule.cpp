// The final-answer rules (answer_rule.h): "####", \boxed{}, the last number.
#include "metareuse/corpus/answer_rule.h"

#include <cctype>

#include "metareuse/core/text.h"

namespace metareuse {
namespace {

constexpr std::string_view kHashes = "####";
constexpr std::string_view kBoxed = "\\boxed{";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [begin, end) of the last number, or nullopt.
std::optional<std::pair<std::size_t, std::size_t>> last_number(std::string_view text) {
  std::size_t end = text.size();
  while (end > 0 && !is_digit(text[end - 1])) --end;
  if (end == 0) return std::nullopt;
  std::size_t begin = end;
  while (begin > 0 && (is_digit(text[begin - 1]) || text[begin - 1] == ',' || text[begin - 1] == '.')) --begin;
  // Separators belong inside a number, not at its edge ("costs 5,6" keeps "5,6"; ", 7" starts at 7).
  while (begin < end && !is_digit(text[begin]) && text[begin] != '.') ++begin;
  if (begin > 0 && text[begin - 1] == '-') --begin;
  return std::make_pair(begin, end);
}

}  // namespace

const char* answer_rule_name(AnswerRule rule) {
  switch (rule) {
    case AnswerRule::kHashes: return "####";
    case AnswerRule::kBoxed: return "\\boxed{}";
    case AnswerRule::kLastNumber: return "last number";
  }
  return "?";
}

std::optional<BoxedAt> last_boxed(std::string_view text) {
  const std::size_t start = text.rfind(kBoxed);
  if (start == std::string_view::npos) return std::nullopt;
  int depth = 1;
  for (std::size_t i = start + kBoxed.size(); i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return BoxedAt{start, i};
  }
  return std::nullopt;  // unclosed: no answer
}

std::optional<SplitAnswer> split_reference(std::string_view text, AnswerRule rule) {
  switch (rule) {
    case AnswerRule::kHashes: {
      const std::size_t marker = text.rfind(kHashes);
      if (marker == std::string_view::npos) return std::nullopt;
      const std::string_view answer = trim_ascii(text.substr(marker + kHashes.size()));
      if (answer.empty()) return std::nullopt;
      return SplitAnswer{text.substr(0, marker), answer};
    }
    case AnswerRule::kBoxed: {
      const std::optional<BoxedAt> boxed = last_boxed(text);
      if (!boxed) return std::nullopt;
      const std::string_view answer =
          trim_ascii(text.substr(boxed->start + kBoxed.size(), boxed->close - boxed->start - kBoxed.size()));
      if (answer.empty()) return std::nullopt;
      return SplitAnswer{text, answer};
    }
    case AnswerRule::kLastNumber: {
      const auto number = last_number(text);
      if (!number) return std::nullopt;
      return SplitAnswer{text, text.substr(number->first, number->second - number->first)};
    }
  }
  return std::nullopt;
}

AnswerRule completion_rule(std::string_view text) {
  if (text.find(kHashes) != std::string_view::npos) return AnswerRule::kHashes;
  if (text.find(kBoxed) != std::string_view::npos) return AnswerRule::kBoxed;
  return AnswerRule::kLastNumber;
}

std::optional<std::string> extract_answer(std::string_view text, AnswerRule rule) {
  if (rule == AnswerRule::kHashes) {
    const std::size_t marker = text.rfind(kHashes);
    if (marker == std::string_view::npos) return std::nullopt;
    std::string_view rest = text.substr(marker + kHashes.size());
    rest = trim_ascii(rest.substr(0, rest.find('\n')));
    if (rest.empty()) return std::nullopt;
    return std::string(rest);
  }
  const std::optional<SplitAnswer> split = split_reference(text, rule);
  if (!split) return std::nullopt;
  return std::string(split->answer);
}

}  // namespace metareuse
