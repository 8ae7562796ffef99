// Distributed pattern mining. Each rank counts the candidates of its share of
// the corpus, then an exact reduction (hash-partitioned alltoallv, sum at the
// owner rank, select, allgather) gives every rank the same global pattern set,
// whatever the rank count.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/handbook.h"

namespace metareuse {
class Communicator;

enum class MiningMode { kExact, kNormalized };
// How normalized mode picks its top_k from the pool of frequent candidates:
// by support, or greedily by the records they cover (a second pass).
enum class Selection { kCoverage, kSupport };

struct MiningOptions {
  MiningMode mode = MiningMode::kNormalized;
  std::uint64_t min_support = 2;
  std::size_t top_k = 32;              // 0: every pattern with enough support
  std::size_t min_words = 4;           // normalized mode: shortest pattern, in words
  std::size_t max_phrase_words = 6;    // normalized mode: longest phrase candidate
  std::size_t max_candidates = 0;      // per-rank cap on distinct local candidates; 0: none
  // Drop a pattern inside a longer one found in >= this share of its records
  // (coverage selection: records where it occurs word-aligned; support
  // selection: support). At 1 the longer must be in every record the shorter
  // is in, so dropping the shorter costs no coverage.
  double containment_ratio = 1.0;
  Selection selection = Selection::kCoverage;
  std::size_t pool_size = 4096;        // normalized mode: most frequent candidates the choice starts from
  // normalized mode: bytes per rank for the normalised reasoning texts that
  // group equal records (each group is mined and matched once); records
  // beyond them are mined one by one and matched in a second read. 0: no groups.
  std::size_t group_bytes = std::size_t{48} << 20;
  std::size_t examples = 3;            // example record ids per pattern
  // normalized mode: most distinct sentences counted per pattern when its
  // instruction is chosen (SentenceCountOptions::sample in instructions.h)
  std::size_t instruction_sample = 4096;
  // Tests only: exact mode keeps just these bits of each sentence's hash, so
  // that different sentences share hashes and the collision handling runs.
  std::uint64_t test_hash_mask = ~std::uint64_t{0};
  ReadOptions read;
};

struct MiningResult {
  Handbook handbook;
  CorpusStats corpus;                  // global
  std::uint64_t local_candidates = 0;  // distinct on this rank before the reduction
  std::uint64_t global_candidates = 0; // distinct over the job
  std::uint64_t qualified = 0;         // with support >= min_support (and past the filters)
  std::uint64_t pruned_candidates = 0; // dropped by the cap, over all ranks
  double seconds_count = 0;            // local counting (read + parse + count), this rank
  double seconds_reduce = 0;           // reduction and selection
  double seconds_instructions = 0;     // normalized mode: the pass that picks each pattern's instruction
  // Per handbook pattern, the sentences that show it, best first (the
  // instruction's sentence first): normalized mode, the most frequent
  // sentences containing it; exact mode, the pattern itself.
  std::vector<std::vector<std::string>> pattern_sentences;
  // Exact mode: two sentences shared a hash where the table kept one text for
  // both, so the corpus was counted again with every text kept (any rank).
  bool recounted = false;
};

// Collective: every rank calls it with the same files and options; every rank
// gets the same result.
MiningResult mine_patterns(const std::vector<std::string>& files, const MiningOptions& options,
                           Communicator& communicator);

// The 64-bit hash exact mode gives a sentence (tests build collisions with it).
std::uint64_t sentence_hash(std::string_view sentence);

const char* mining_mode_name(MiningMode mode);
MiningMode parse_mining_mode(const std::string& name);

// Share of the holdout records whose normalised reasoning contains at least one
// pattern (patterns are normalised first, so exact-mode sets work too).
struct Coverage {
  std::uint64_t records = 0;
  std::uint64_t covered = 0;
  double share() const { return records == 0 ? 0.0 : static_cast<double>(covered) / static_cast<double>(records); }
};
Coverage holdout_coverage(const std::vector<Pattern>& patterns, const std::vector<std::string>& holdout_files,
                          const ReadOptions& read, Communicator& communicator);

}  // namespace metareuse
