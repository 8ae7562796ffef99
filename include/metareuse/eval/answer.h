// Scoring one generated answer: the final answer it states, whether that
// matches the reference, how many reasoning steps it takes, and which
// handbook patterns it uses. Torch-free, so it is unit-tested on strings.
//
// Definitions (the README's eval section repeats them):
//   strict answer    the answer by the question's rule (corpus/answer_rule.h:
//                    "####" for GSM8K and seed records, \boxed{} for MATH's,
//                    the marker their reference carries for completions).
//   flexible answer  the last number in the output (lm-evaluation-harness's
//                    flexible extraction for GSM8K), whatever the format.
//   final answer     (extract_final_answer) the text after the last "####" up
//                    to the end of that line, otherwise the content of the
//                    last \boxed{...}.
//   normalised       surrounding white space, '$', ',' and a trailing '.'
//                    removed; a number is then compared by value ("18.00" is "18").
//   reasoning        the text before the final-answer marker ("####" or the
//                    last \boxed), or the whole output when there is none.
//   reasoning steps  the seed's sentences of the reasoning (patterns/text.h:
//                    cut at every newline and after '.', '!' or '?' followed
//                    by white space), empty ones not counted.
//   pattern use      a handbook pattern occurs in the output when its
//                    normalised form is a word-aligned substring of the
//                    output's normalised form (patterns/text.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/corpus/corpus.h"  // FieldNames, AnswerRule: questions are read by the corpus's rules
#include "metareuse/patterns/handbook.h"

namespace metareuse {

// The final answer stated in `text`, before normalisation; nullopt when it states none.
std::optional<std::string> extract_final_answer(std::string_view text);

// The strict and the flexible answer of one output against its reference.
struct AnswerCheck {
  std::optional<std::string> strict_answer;
  bool strict = false;
  std::optional<std::string> flexible_answer;
  bool flexible = false;
};
AnswerCheck check_answer(std::string_view output, std::string_view reference, AnswerRule rule);

// Removes white space, '$' and ',' and a trailing '.'; "$1,234.00." -> "1234.00".
std::string normalize_answer(std::string_view answer);

// Normalised answers equal as strings, or both numbers with the same value.
bool answers_match(std::string_view predicted, std::string_view reference);

// The reasoning part of an output (see above).
std::string_view reasoning_part(std::string_view text);

// Non-empty seed sentences of the reasoning part.
std::int64_t count_reasoning_steps(std::string_view text);

// Finds handbook patterns in texts (normalised once, at construction).
class PatternMatcher {
 public:
  explicit PatternMatcher(const std::vector<Pattern>& patterns);
  // Indices of the patterns that occur in `text`, in handbook order.
  std::vector<std::size_t> find(std::string_view text) const;
  std::size_t size() const { return normalized_.size(); }
  const std::string& name(std::size_t index) const { return names_[index]; }  // the pattern's handbook name

 private:
  std::vector<std::string> normalized_;
  std::vector<std::string> names_;
};

// One held-out question, from a record of any corpus format (corpus.h, read
// by the corpus's own rule); a seed record may leave out its reasoning here.
struct Question {
  std::int64_t line = 0;       // 1-based line in the file
  std::string question;
  std::string reference;       // the reference final answer, as written
  std::string reference_reasoning;
  AnswerRule answer_rule = AnswerRule::kHashes;  // how a generation's strict answer is found
};

struct QuestionSet {
  std::vector<Question> questions;
  std::int64_t bad_records = 0;  // reported as warnings naming file:line
};

// Reads a JSON Lines file of questions; at most `limit` (0: all), fields named
// as corpus.fields names them. A bad line is warned about (file:line and why)
// and skipped; an unreadable file or a JSON array throws.
QuestionSet read_questions(const std::string& path, std::int64_t limit = 0, const FieldNames& fields = {});

// The strict rules of a question set, as eval.json shows them: "####", or
// "####, \boxed{}" when its records differ.
std::string answer_rules_of(const std::vector<Question>& questions);

// Mean and median of a list (0 for an empty one).
double mean_of(const std::vector<double>& values);
double median_of(std::vector<double> values);

// (value - baseline) / baseline; nullopt when the baseline is 0.
std::optional<double> relative_change(double value, double baseline);

}  // namespace metareuse
