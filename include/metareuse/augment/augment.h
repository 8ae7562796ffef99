// The augment stage: each corpus record becomes a training example with a
// prompt part and a target part (the loss goes on the target only), the prompt
// carrying handbook patterns.
//   global      the seed's prefix, "Consider patterns like: p1; p2; …. ", with the top k patterns;
//   retrieval   the k patterns most relevant to the question (BM25 over each
//               pattern's words and behavior name), the paper's behavior-conditioned idea.
// Output, one JSON object per line:
//   {"id", "prompt", "target", "patterns": [text...], "behaviors": [name...], "question", "solution"}
// prompt = prefix + question + "\n", target = reasoning + "\n#### " + solution.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/handbook.h"

namespace metareuse {
class Communicator;
}

namespace metareuse::augment {

enum class AugmentMode { kGlobal, kRetrieval };
AugmentMode parse_augment_mode(const std::string& name);
const char* augment_mode_name(AugmentMode mode);

struct AugmentOptions {
  AugmentMode mode = AugmentMode::kGlobal;
  std::size_t top_k = 8;    // patterns per example
  double bm25_k1 = 1.2;
  double bm25_b = 0.75;
  corpus::ReadOptions read;
};

// Okapi BM25 over the patterns (documents: the content words of the pattern's
// normalised text and of its behavior name). Hand-written: a few dozen lines,
// and no Debian package offers BM25 for C++.
class PatternIndex {
 public:
  PatternIndex(const std::vector<patterns::Pattern>& patterns, double k1, double b);
  // Indices of the best-scoring patterns (score > 0), best first, ties by handbook order.
  std::vector<std::size_t> retrieve(const std::string& query, std::size_t k) const;
  double score(const std::vector<std::string>& query_terms, std::size_t document) const;

 private:
  std::vector<std::vector<std::string>> documents_;
  double average_length_ = 0;
  double k1_, b_;
};

// The prompt prefix for these patterns: "Consider patterns like: a; b. ".
std::string pattern_prefix(const std::vector<const patterns::Pattern*>& chosen);

struct AugmentStats {
  corpus::CorpusStats corpus;     // global
  std::uint64_t examples = 0;     // written
  std::uint64_t retrieved = 0;    // retrieval mode: examples given at least one retrieved pattern
};

// Collective: every rank writes its share to a part file; rank 0 joins them in
// rank order into `out_path`, so the output is the same at any rank count.
AugmentStats augment_corpus(const std::vector<std::string>& files, const patterns::Handbook& handbook,
                            const AugmentOptions& options, const std::string& out_path, Communicator& communicator);

}  // namespace metareuse::augment
