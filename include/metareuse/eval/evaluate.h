// Evaluation on held-out questions: prompts built by the augment stage's rule
// (PromptPolicy) and tokenized as prepare tokenizes training prompts
// (PromptFormat, tokenizer/prompt_format.h: the same template, the same stop tokens),
// answers generated with a KV cache (greedy or seeded sampling, a token
// budget), each answer scored (eval/answer.h), and per-model summaries with
// the relative change against a baseline.
//
// Distribution: every rank loads the whole model (inference needs no
// sharding at the sizes evaluated on CPU) and answers questions i with
// i % ranks == rank; the results are gathered to rank 0. Sampling draws from
// a generator seeded with (seed, question index), so the answers are the same
// at any rank count.
#pragma once

#include <nlohmann/json.hpp>  // results as JSON

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metareuse/augment/prompt.h"
#include "metareuse/checkpoint/answering_model.h"  // AnsweringModel: eval's entries, distill's teacher
#include "metareuse/eval/answer.h"
#include "metareuse/eval/eval_file.h"
#include "metareuse/eval/eval_options.h"
#include "metareuse/model/llama.h"
#include "metareuse/patterns/handbook.h"
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
class Communicator;

// The answer to one prompt: tokens until a stop token or the budget.
struct Generation {
  std::vector<TokenId> ids;  // without the stop token
  bool stopped = false;
};
// The answers to prompts generated together (generate_batch). Sampling is
// seeded by (options.seed, question index), so an answer does not depend on
// which questions share its batch or which rank draws it.
std::vector<Generation> generate_answers(const LlamaModel& model, const std::vector<std::vector<TokenId>>& prompts,
                                         const std::vector<TokenId>& stops, const EvalOptions& options,
                                         const std::vector<std::int64_t>& question_indices);

// Collective. Returns every answer (eval_file.h's AnswerRecord, model
// "model"), in question order, on rank 0; an empty list on the other ranks. A batch whose generation throws (out of memory, a
// torch error) gives each of its questions a failed result carrying the error,
// and the others go on; the caller's own mistakes (InputError, ConfigError,
// UsageError: a prompt outside the vocabulary, say) would fail every
// question, so they end it. `indices` names each question (its result's index,
// which seeds its sampling); empty: 0, 1, 2, ... A caller that answers a list
// in parts (distill, to resume) passes each part's own indices, so the
// answers do not depend on where the parts were cut.
std::vector<AnswerRecord> evaluate_questions(const LlamaModel& model, const Tokenizer& tokenizer,
                                             const std::vector<Question>& questions, const PromptPolicy& prompts,
                                             const PatternMatcher& matcher, const EvalOptions& options,
                                             Communicator& communicator, const std::vector<std::int64_t>& indices = {});


// The figures of eval.json's "summary" (eval_file.h; SummaryChange::between compares two).
Summary summarize(const std::vector<AnswerRecord>& results);
// Per handbook pattern (handbook order): how many prompts carried it, how many
// answers applied it, and accuracy and mean reasoning tokens of the answers
// that applied it against those that did not. Answers name patterns by their
// handbook names.
std::vector<BehaviorUse> behavior_use(const std::vector<AnswerRecord>& results, const Handbook& handbook);

}  // namespace metareuse
