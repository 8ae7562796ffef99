// Where a text states its final answer, one rule per record format. The corpus
// reader splits a reference with them (reasoning, then the final answer) and
// eval finds a generation's answer with the same rules, so training data and
// the answer check cannot disagree about what "the answer" is. Torch-free.
//
//   ####          GSM8K's marker: the text after the last "####" (what the
//                 augment stage trains the model to write).
//   \boxed{}      MATH's: the content of the last \boxed{...}, braces balanced.
//   last number   the last number in the text (lm-evaluation-harness's
//                 "flexible" extraction): digits with ',' or '.' inside and an
//                 optional leading '-'.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace metareuse {

enum class AnswerRule { kHashes = 0, kBoxed, kLastNumber };

// "####", "\boxed{}", "last number": as eval.json and the README name them.
const char* answer_rule_name(AnswerRule rule);

// A reference split into its reasoning and final answer (views into the text).
struct SplitAnswer {
  std::string_view reasoning;
  std::string_view answer;
};

// A reference by `rule`. kHashes: the reasoning before the last "####", the
// answer after it to the end of the text, white space trimmed. kBoxed and
// kLastNumber: the whole text is the reasoning (the answer sentence is part of
// it). nullopt when the rule finds no (non-empty) answer.
std::optional<SplitAnswer> split_reference(std::string_view text, AnswerRule rule);

// The rule a free-form reference (a completion, an assistant turn, an
// "answer" field) is read with: "####" when the text has the marker, else
// \boxed{} when it has "\boxed{", else the last number. The marker it
// carries decides, not whether it yields an answer: "#### " with nothing
// after it is a reference without an answer, not one read another way.
AnswerRule completion_rule(std::string_view text);

// The answer a generation states by `rule`, before normalisation (eval's
// check). kHashes stops at the end of the marker's line, as a model goes on
// writing after its answer. nullopt when it states none.
std::optional<std::string> extract_answer(std::string_view text, AnswerRule rule);

// The last "\boxed{" and the position of its closing brace; nullopt when there
// is none or it is not closed.
struct BoxedAt {
  std::size_t start = 0;  // of "\boxed{"
  std::size_t close = 0;  // of the matching '}'
};
std::optional<BoxedAt> last_boxed(std::string_view text);

}  // namespace metareuse
