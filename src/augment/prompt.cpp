#include "metareuse/augment/prompt.h"

#include <algorithm>

#include "metareuse/core/error.h"

namespace metareuse {

PromptPolicy::PromptPolicy(const Handbook* handbook, AugmentMode mode, std::size_t top_k, double bm25_k1,
                           double bm25_b, const PatternContexts* contexts)
    : handbook_(handbook), mode_(handbook == nullptr ? AugmentMode::kNone : mode), top_k_(top_k) {
  if (mode_ == AugmentMode::kNone) return;
  for (std::size_t i = 0; i < handbook->patterns.size() && i < top_k; ++i) global_.push_back(&handbook->patterns[i]);
  if (mode_ == AugmentMode::kRetrieval) index_.emplace(handbook->patterns, bm25_k1, bm25_b);
  if (mode_ == AugmentMode::kUsed) {
    used_.emplace(handbook->patterns);
    if (contexts != nullptr) context_index_.emplace(handbook->patterns, *contexts, bm25_k1, bm25_b);
  }
}

std::vector<const Pattern*> PromptPolicy::by_index(const std::vector<std::size_t>& indices) const {
  std::vector<const Pattern*> chosen;
  for (std::size_t i : indices) chosen.push_back(&handbook_->patterns[i]);
  return chosen;
}

std::vector<const Pattern*> PromptPolicy::in_handbook_order(std::vector<std::size_t> indices) const {
  std::sort(indices.begin(), indices.end());
  return by_index(indices);
}

PromptChoice PromptPolicy::for_training(std::string_view question, std::string_view reasoning) const {
  PromptChoice choice;
  if (mode_ == AugmentMode::kUsed) {
    choice.patterns = by_index(used_->find(reasoning, top_k_));  // already in handbook order
    choice.retrieved = !choice.patterns.empty();
    return choice;
  }
  return for_test(question);
}

PromptChoice PromptPolicy::for_test(std::string_view question) const {
  PromptChoice choice;
  switch (mode_) {
    case AugmentMode::kNone: return choice;
    case AugmentMode::kGlobal: choice.patterns = global_; return choice;
    case AugmentMode::kRetrieval: {
      std::vector<std::size_t> best = index_->retrieve(std::string(question), top_k_);
      choice.retrieved = !best.empty();
      choice.patterns = choice.retrieved ? by_index(best) : global_;
      return choice;
    }
    case AugmentMode::kUsed: {
      if (!context_index_) {
        throw InputError("augment mode used: test prompts need the pattern contexts (augmented examples)");
      }
      // Listed in handbook order, as training lists the patterns an example's reasoning uses.
      choice.patterns = in_handbook_order(context_index_->retrieve(std::string(question), top_k_));
      choice.retrieved = !choice.patterns.empty();
      return choice;
    }
  }
  return choice;
}

std::string PromptPolicy::prompt(const PromptChoice& choice, std::string_view question) {
  return pattern_prefix(choice.patterns) + std::string(question) + "\n";
}

}  // namespace metareuse
