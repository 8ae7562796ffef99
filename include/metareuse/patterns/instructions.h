// The instruction of a mined pattern: a second distributed pass over the
// corpus counts, for each chosen pattern, the normalised sentences that
// contain it, and the most frequent full sentence (text.h's is_full_sentence)
// becomes the pattern's instruction. A phrase such as "a total of <num>" then
// reads as "A total of <num> + <num> = <num> apples were sold."
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/corpus/corpus.h"

namespace metareuse {
class Communicator;

struct SentenceCountOptions {
  // Most distinct sentences counted per pattern. Past it a pattern keeps the
  // sentences that come first in a fixed order (full sentences first, then by
  // a 64-bit hash of the text): a hash sample that is the same at any rank
  // count, with exact record counts for every sentence in it. Memory per rank:
  // about patterns x sample sentences.
  std::size_t sample = 4096;
  std::size_t keep = 3;  // sentences returned per pattern, best first
  ReadOptions read;
};

struct ContainingSentences {
  std::vector<std::string> sentences;  // normalised, best first: at most `keep`
  std::vector<std::uint64_t> records;  // records holding each of them
  std::vector<bool> full;              // is_full_sentence(behavior_instruction(sentence))
  std::uint64_t counted = 0;           // distinct sentences counted (at most the sample)
  bool sampled = false;                // more distinct sentences contain the pattern than the sample holds
};

// Collective: every rank gives the same files, patterns and options and gets
// the same answer, whatever the rank count. `patterns` are normalised texts
// (normalize(), as the handbook stores them); a sentence contains one when it
// holds it word-aligned (contains_word_aligned). Sentences are those the
// normalized miner cuts (at line ends and after '.', '!', '?'); a sentence
// counts once per record. Best first: full sentences before fragments, then
// more records, then fewer words (fewer specifics), then the text's bytes.
std::vector<ContainingSentences> count_containing_sentences(const std::vector<std::string>& files,
                                                            const std::vector<std::string>& patterns,
                                                            const SentenceCountOptions& options,
                                                            Communicator& communicator);

}  // namespace metareuse
