// The one rule choosing the patterns a prompt carries, per augment mode. The
// augment stage builds training prompts with it and eval builds test prompts
// with it, so a model is tested on prompts shaped as it was trained on.
//   global     the top k patterns of the handbook;
//   retrieval  BM25's best k for the question (PatternIndex), else the global top k;
//   used       training: the patterns the example's reasoning uses (at most k,
//              handbook order). At test time there is no reasoning yet: the k
//              patterns a ContextIndex retrieves for the question, in handbook order;
//   none       no patterns.
// The prompt is pattern_prefix(patterns) + question + "\n".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/augment/augment.h"

namespace metareuse {

struct PromptChoice {
  std::vector<const Pattern*> patterns;
  bool retrieved = false;  // retrieval or used mode found patterns for this question (not the fallback)
};

class PromptPolicy {
 public:
  // No handbook (nullptr) or mode none: prompts carry no patterns. Used mode
  // needs `contexts` (the training examples' pattern contexts) for test-time
  // prompts only. The handbook and contexts must outlive the policy.
  PromptPolicy(const Handbook* handbook, AugmentMode mode, std::size_t top_k, double bm25_k1,
               double bm25_b, const PatternContexts* contexts = nullptr);

  // A training example's patterns, from its question and its reasoning.
  PromptChoice for_training(std::string_view question, std::string_view reasoning) const;
  // A test question's patterns (no reasoning is known yet).
  PromptChoice for_test(std::string_view question) const;

  std::string training_prompt(std::string_view question, std::string_view reasoning) const {
    return prompt(for_training(question, reasoning), question);
  }
  std::string test_prompt(std::string_view question) const { return prompt(for_test(question), question); }
  static std::string prompt(const PromptChoice& choice, std::string_view question);

  bool carries_patterns() const { return mode_ != AugmentMode::kNone; }

 private:
  std::vector<const Pattern*> in_handbook_order(std::vector<std::size_t> indices) const;
  std::vector<const Pattern*> by_index(const std::vector<std::size_t>& indices) const;

  const Handbook* handbook_;
  AugmentMode mode_;
  std::size_t top_k_;
  std::vector<const Pattern*> global_;
  std::optional<PatternIndex> index_;           // retrieval
  std::optional<UsedPatterns> used_;            // used, training
  std::optional<ContextIndex> context_index_;   // used, test (with contexts)
};

}  // namespace metareuse
