// The augment stage: each corpus record becomes a training example with a
// prompt part and a target part (the loss goes on the target only), the prompt
// carrying handbook patterns.
//   global      the prefix "Consider these behaviors: name: instruction; …. " with the top k patterns;
//   retrieval   the k patterns most relevant to the question (BM25 over each
//               pattern's words and behavior name), the paper's behavior-conditioned idea.
//   used        the patterns the example's own reasoning uses (at most k,
//               in handbook order): the prefix tells what the target does. At
//               test time there is no reasoning yet, so eval retrieves k
//               patterns from the question with a ContextIndex (BM25 over each
//               pattern's words and the questions of the training examples
//               that use it) and lists them in handbook order too.
//   none        no patterns (an unaugmented corpus, e.g. for a baseline).
// Output, one AugmentedExample per line (augmented_example.h):
//   {"id", "prompt", "target", "patterns": [text...], "behaviors": [name...], "question", "solution"}
// prompt = prefix + question + "\n", target = reasoning + "\n#### " + solution.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/handbook.h"

namespace metareuse {
class Communicator;

enum class AugmentMode { kGlobal, kRetrieval, kUsed, kNone };
AugmentMode parse_augment_mode(const std::string& name);
const char* augment_mode_name(AugmentMode mode);

struct AugmentOptions {
  AugmentMode mode = AugmentMode::kGlobal;
  std::size_t top_k = 8;    // patterns per example
  double bm25_k1 = 1.2;
  double bm25_b = 0.75;
  ReadOptions read;
};

// Okapi BM25 over the patterns (documents: the content words of the pattern's
// normalised text and of its behavior name). Hand-written: a few dozen lines,
// and no Debian package offers BM25 for C++.
class PatternIndex {
 public:
  PatternIndex(const std::vector<Pattern>& patterns, double k1, double b);
  // Indices of the best-scoring patterns (score > 0), best first, ties by handbook order.
  std::vector<std::size_t> retrieve(const std::string& query, std::size_t k) const;
  double score(const std::vector<std::string>& query_terms, std::size_t document) const;

 private:
  std::vector<std::vector<std::string>> documents_;
  double average_length_ = 0;
  double k1_, b_;
};

// --- used mode -------------------------------------------------------------

// Finds handbook patterns in texts: a pattern is used by a text when its
// normalised form is a word-aligned substring of the text's normalised form
// (patterns/text.h), the rule eval's pattern use follows.
class UsedPatterns {
 public:
  explicit UsedPatterns(const std::vector<Pattern>& patterns);
  // Indices of the patterns in `text`, in handbook order, at most `limit` (0: all).
  std::vector<std::size_t> find(std::string_view text, std::size_t limit = 0) const;

 private:
  std::vector<std::string> normalized_;
};

// Where each pattern is used: for pattern i, the share of the training
// examples using it whose question contains each content word.
struct PatternContexts {
  std::vector<std::vector<std::pair<std::string, double>>> term_shares;  // per pattern, sorted by term
  std::vector<std::uint64_t> examples;                                   // examples using each pattern
};
// From an augmented JSON Lines file's {"question", "patterns": [text...]}
// records (pattern texts not in the handbook are ignored). Throws InputError
// naming file:line on a bad line.
PatternContexts read_pattern_contexts(const std::string& augmented_path, const Handbook& handbook);

// Okapi BM25 over documents that join a pattern's words and behavior name
// (term frequency = count) with its context (term frequency = the share of
// its examples' questions holding the term). A pattern used across many kinds
// of question spreads its context thin; one used by a single kind of question
// keeps that kind's words at full weight, so the question's own kind of move
// ranks first. Hand-written like PatternIndex.
class ContextIndex {
 public:
  ContextIndex(const std::vector<Pattern>& patterns, const PatternContexts& contexts, double k1, double b);
  // The k best patterns (score > 0), best first, ties by handbook order.
  std::vector<std::size_t> retrieve(const std::string& query, std::size_t k) const;

 private:
  std::vector<std::vector<std::pair<std::string, double>>> documents_;  // sorted by term
  std::vector<double> lengths_;
  double average_length_ = 1;
  double k1_, b_;
};

// The prompt prefix for these patterns, as behavior-conditioned inference
// lists them: "Consider these behaviors: name_a: instruction a; name_b: instruction b. "
// (each instruction without its final period).
std::string pattern_prefix(const std::vector<const Pattern*>& chosen);

struct AugmentStats {
  CorpusStats corpus;             // global
  std::uint64_t examples = 0;     // written
  std::uint64_t retrieved = 0;    // retrieval mode: examples given at least one retrieved pattern
};

// Collective: every rank writes its share to a part file; rank 0 joins them in
// rank order into `out_path`, so the output is the same at any rank count.
AugmentStats augment_corpus(const std::vector<std::string>& files, const Handbook& handbook,
                            const AugmentOptions& options, const std::string& out_path, Communicator& communicator);

}  // namespace metareuse
