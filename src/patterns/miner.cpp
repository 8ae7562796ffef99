// mine_patterns, stage by stage: 1. this rank's count (LocalCount, with the
// candidates of candidates.h and normalized mode's groups of record_groups.h);
// 2. the reduction to the owner ranks and 3.-4. the pool every rank holds
// (reduction.h); normalized mode's choice from the pool (selection.h, which
// matches with pool_matcher.h); 5. the job's counts and the handbook.
#include "metareuse/patterns/miner.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "candidate_table.h"  // CandidateTable, RecordCandidates
#include "candidates.h"       // ExactSentences, NormalizedMiner, first_occurrences_match
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/instructions.h"  // count_containing_sentences
#include "metareuse/patterns/text.h"
#include "record_groups.h"
#include "reduction.h"        // exchange_groups, reduce_to_owners, gather_pool
#include "selection.h"        // choose_by_coverage, choose_by_support

namespace metareuse {
// The miner's internals (src/patterns/*.h).
using patterns_detail::Candidate;
using patterns_detail::CandidateTable;
using patterns_detail::choose_by_coverage;
using patterns_detail::choose_by_support;
using patterns_detail::ExactSentences;
using patterns_detail::exchange_groups;
using patterns_detail::first_occurrences_match;
using patterns_detail::gather_pool;
using patterns_detail::hash_text;
using patterns_detail::kKindSentence;
using patterns_detail::NormalizedMiner;
using patterns_detail::OwnedCandidates;
using patterns_detail::OwnedGroups;
using patterns_detail::Pool;
using patterns_detail::RecordCandidates;
using patterns_detail::RecordGroups;
using patterns_detail::reduce_to_owners;

namespace {

Pattern to_pattern(const Candidate& candidate, const std::vector<std::string>& files) {
  Pattern pattern;
  pattern.text = std::string(candidate.view());
  pattern.support = candidate.support;
  pattern.kind = (candidate.kinds & kKindSentence) != 0 ? "sentence" : "phrase";
  for (std::size_t i = 0; i < candidate.example_count; ++i) {
    pattern.examples.push_back(record_key_name(candidate.examples[i], files));
  }
  pattern.name = behavior_name(pattern.text);
  pattern.instruction = behavior_instruction(pattern.text);
  return pattern;
}

// Exact mode's table size for this rank's share of the bytes (GSM8K-like text
// has about one distinct sentence per 190 bytes of JSON), capped at 32 MB of
// slots: the table then skips most of its doublings, each of which re-hashed
// every candidate into freshly zeroed memory. A smaller corpus of sentences
// only leaves slots empty; a larger one still grows.
std::size_t exact_reserve(const std::vector<std::string>& files, int world_size) {
  std::uint64_t bytes = 0;
  for (const std::string& file : files) {
    std::error_code error;
    const auto size = std::filesystem::file_size(file, error);
    if (!error) bytes += size;
  }
  const std::uint64_t share = bytes / static_cast<std::uint64_t>(world_size);
  return static_cast<std::size_t>(std::min<std::uint64_t>(share / 192, 1400000));
}

// Step 1: the candidates of this rank's share of the corpus.
class LocalCount {
 public:
  LocalCount(const std::vector<std::string>& files, const MiningOptions& options, Communicator& communicator);

  // Reads and counts this rank's share (again, with every text kept, after an
  // exact-mode hash collision: then result.recounted), then mines normalized
  // mode's groups. Collective.
  void count(MiningResult& result);

  const CandidateTable& table() const { return table_; }
  // Normalized mode: the groups of the records read here, and the groups mined
  // here (those or, at several ranks, the ones this rank owns after the exchange).
  const RecordGroups& groups() const { return groups_; }
  const RecordGroups& mined_groups() const { return exchange_groups_ ? owned_groups_.groups : groups_; }
  const CorpusStats& stats() const { return stats_; }
  const ReadOptions& read() const { return read_; }
  const ExactSentences& sentences() const { return sentences_; }
  std::uint64_t pruned() const { return pruned_; }
  std::uint64_t prune_rounds() const { return prune_rounds_; }

 private:
  void count_record(const Record& record);
  void cap_table();
  bool any_rank_collided();
  void mine_groups();

  const std::vector<std::string>& files_;
  const MiningOptions& options_;
  Communicator& communicator_;
  const bool exact_;
  // Exact mode keeps no text for a sentence seen once (CandidateTable's lazy
  // mode) unless every candidate qualifies anyway or the cap may prune.
  const bool lazy_;
  const bool exchange_groups_;
  std::size_t exact_reserve_ = 0;
  const ExactSentences sentences_;
  ReadOptions read_;
  CandidateTable table_;
  // A record's distinct candidates are gathered first, then counted with
  // their slots prefetched together: the misses overlap instead of queueing.
  RecordCandidates record_candidates_;
  RecordGroups groups_;
  OwnedGroups owned_groups_;
  NormalizedMiner normalized_miner_;
  std::string normalized_text_;
  CorpusStats stats_;
  std::uint64_t pruned_ = 0;
  std::uint64_t prune_rounds_ = 0;
};

LocalCount::LocalCount(const std::vector<std::string>& files, const MiningOptions& options,
                       Communicator& communicator)
    : files_(files),
      options_(options),
      communicator_(communicator),
      exact_(options.mode == MiningMode::kExact),
      lazy_(exact_ && options.min_support >= 2 && options.max_candidates == 0),
      exchange_groups_(!exact_ && communicator.size() > 1),
      sentences_{options.test_hash_mask},
      read_(options.read),
      table_(/*by_words=*/!exact_),
      record_candidates_(/*by_words=*/!exact_),
      groups_(options.group_bytes),
      normalized_miner_(options) {
  table_.set_lazy(lazy_);
  if (exact_) {
    exact_reserve_ = exact_reserve(files, communicator.size());
    table_.reserve(exact_reserve_);
  }
  // The lines are numbered after the read: the keys counted during it are
  // local to this rank and made global once it is over (globalize_keys), so
  // no rank waits for a lower one to count its lines first.
  read_.number_lines_after = true;
}

void LocalCount::count(MiningResult& result) {
  auto visit = [this](const Record& record) { count_record(record); };
  stats_ = read_corpus(files_, read_, communicator_, visit);
  if (lazy_ && any_rank_collided()) {
    log_warn("exact mode: two different sentences share a 64-bit hash on some rank; "
              "counting again with every text kept");
    table_.clear();
    table_.set_lazy(false);
    table_.reserve(exact_reserve_);
    stats_ = read_corpus(files_, read_, communicator_, visit);
    result.recounted = true;
  }
  const bool lower_ranks_have_lines =
      std::any_of(stats_.line_base.begin(), stats_.line_base.end(), [](std::uint64_t base) { return base != 0; });
  if (lower_ranks_have_lines) {
    table_.globalize_keys(stats_);
    groups_.globalize_keys(stats_);
  }
  if (exchange_groups_) exchange_groups(groups_, communicator_, owned_groups_);
  mine_groups();
  if (!exact_) {
    log_debug("normalized: {} local records in {} groups of equal normalised reasoning{}; {} groups mined here",
               stats_.records, groups_.size(),
               groups_.complete() ? "" : " (the rest mined one by one: the group texts filled their memory)",
               mined_groups().size());
  }
}

void LocalCount::count_record(const Record& record) {
  record_candidates_.clear();
  if (exact_) {
    sentences_(record.reasoning, [&](std::string_view sentence, std::uint64_t hash) {
      record_candidates_.add(sentence, hash, kKindSentence);
    });
    if (table_.lazy()) {
      table_.count_record_lazy(record_candidates_, record.key, record.offset);
      return;
    }
  } else {
    normalize_lines(record.reasoning, normalized_text_);
    if (groups_.add(normalized_text_, hash_text(normalized_text_), record.key)) return;  // mined after the read
    normalized_miner_.mine(normalized_text_, record_candidates_);
  }
  table_.count_record(record_candidates_, record.key);
  cap_table();
}

void LocalCount::cap_table() {
  if (options_.max_candidates != 0 && table_.size() >= options_.max_candidates) {
    // Graceful degradation: drop the rarest local candidates until a quarter is free.
    std::uint32_t threshold = 1;
    while (table_.size() > options_.max_candidates * 3 / 4) {
      pruned_ += table_.prune(threshold++);
    }
    ++prune_rounds_;
  }
}

// The first occurrence of each candidate seen twice or more was counted by its
// hash alone: reads those records again and compares the texts. Two sentences
// with one 64-bit hash are not expected in practice, but exact mode promises
// the reference's counts, so then every rank counts again with all texts kept.
bool LocalCount::any_rank_collided() {
  bool collided = table_.collision() || !first_occurrences_match(table_, files_, read_, sentences_);
  return communicator_.allreduce_value<std::uint64_t>(collided ? 1 : 0, ReduceOp::kMax) != 0;
}

// Normalized mode: each group of records with one normalised text, mined once
// and counted for all of them. After the read, so the records mined alone were
// counted in key order (count_record's examples rely on it).
void LocalCount::mine_groups() {
  const RecordGroups& mined = mined_groups();
  for (std::size_t index = 0; index < mined.size(); ++index) {
    const RecordGroups::Group& group = mined[index];
    record_candidates_.clear();
    normalized_miner_.mine(RecordGroups::text(group), record_candidates_);
    table_.count_records(record_candidates_, group.count, group.keys, group.key_count);
    cap_table();
  }
}

// The handbook of the chosen patterns, with the job's counts (counts: distinct
// candidates, qualified, pruned, prune rounds) and the config that made it.
void fill_handbook(const std::vector<const Candidate*>& chosen, const std::vector<std::uint64_t>& counts,
                   const std::vector<std::string>& files, const MiningOptions& options, int world_size,
                   MiningResult& result) {
  Handbook& handbook = result.handbook;
  handbook.records = result.corpus.records;
  handbook.mode = mining_mode_name(options.mode);
  handbook.exact_counts = counts[3] == 0;
  for (const Candidate* candidate : chosen) handbook.patterns.push_back(to_pattern(*candidate, files));
  make_names_unique(handbook.patterns);
  handbook.stats = {{"records", result.corpus.records},
                    {"bad_lines", result.corpus.bad_lines},
                    {"blank_lines", result.corpus.blank_lines},
                    {"candidates", result.global_candidates},
                    {"qualified", result.qualified},
                    {"patterns", handbook.patterns.size()},
                    {"pruned_candidates", result.pruned_candidates},
                    {"ranks", world_size}};
  handbook.config = {{"mode", handbook.mode},
                     {"min_support", options.min_support},
                     {"top_k", options.top_k},
                     {"min_words", options.min_words},
                     {"max_phrase_words", options.max_phrase_words},
                     {"max_candidates", options.max_candidates},
                     {"containment_ratio", options.containment_ratio},
                     {"selection", options.selection == Selection::kCoverage ? "coverage" : "support"},
                     {"pool_size", options.pool_size},
                     {"files", files},
                     {"fields",
                      {{"question", options.read.fields.question},
                       {"reasoning", options.read.fields.reasoning},
                       {"solution", options.read.fields.solution}}}};
}

// Normalized mode: a pattern is often a phrase ("a total of <num>"); its
// instruction is the best sentence containing it (count_containing_sentences:
// a full sentence when one exists, the most frequent of those), found by a
// second pass over the corpus. A pattern in no sentence keeps its own text.
void choose_instructions(const std::vector<std::string>& files, const MiningOptions& options,
                         Communicator& communicator, MiningResult& result) {
  Handbook& handbook = result.handbook;
  std::vector<std::string> texts;
  for (const Pattern& pattern : handbook.patterns) texts.push_back(pattern.text);
  SentenceCountOptions counting;
  counting.sample = options.instruction_sample;
  counting.keep = std::max<std::size_t>(options.examples, 1);
  counting.read = options.read;
  counting.read.max_reported_per_rank = 0;  // the first pass reported the bad lines
  const std::vector<ContainingSentences> found = count_containing_sentences(files, texts, counting, communicator);
  std::uint64_t from_sentences = 0, sampled = 0;
  for (std::size_t i = 0; i < found.size(); ++i) {
    if (!found[i].sentences.empty()) {
      handbook.patterns[i].instruction = behavior_instruction(found[i].sentences.front());
      ++from_sentences;
    }
    sampled += found[i].sampled ? 1 : 0;
    result.pattern_sentences.push_back(found[i].sentences.empty() ? std::vector<std::string>{handbook.patterns[i].text}
                                                                  : found[i].sentences);
  }
  handbook.stats["instructions_from_sentences"] = from_sentences;
  handbook.stats["instructions_sampled"] = sampled;
  handbook.config["instruction_sample"] = options.instruction_sample;
  if (sampled > 0) {
    log_info("instructions: {} of {} patterns are in more than {} distinct sentences; each was chosen from a hash "
             "sample of {} (patterns.instruction_sample), the same at any rank count",
             sampled, found.size(), options.instruction_sample, options.instruction_sample);
  }
}

}  // namespace

std::uint64_t sentence_hash(std::string_view sentence) { return hash_text(sentence); }

const char* mining_mode_name(MiningMode mode) { return mode == MiningMode::kExact ? "exact" : "normalized"; }

MiningMode parse_mining_mode(const std::string& name) {
  if (name == "exact") return MiningMode::kExact;
  if (name == "normalized" || name == "normalised") return MiningMode::kNormalized;
  throw ConfigError(fmt::format("pattern mode must be exact or normalized, got '{}'", name));
}

MiningResult mine_patterns(const std::vector<std::string>& files, const MiningOptions& options,
                           Communicator& communicator) {
  const int world_size = communicator.size();
  const bool exact = options.mode == MiningMode::kExact;
  MiningResult result;
  Stopwatch watch;

  // 1. Local counting over this rank's share.
  LocalCount local(files, options, communicator);
  local.count(result);
  result.local_candidates = local.table().size();
  result.seconds_count = watch.seconds();
  watch.reset();

  // 2. The exact reduction to the owner ranks (reduction.h).
  OwnedCandidates owned(/*by_words=*/!exact);
  const CandidateTable* owner_table = &local.table();
  std::uint64_t owner_distinct = local.table().size();
  if (world_size > 1) {
    reduce_to_owners(local.table(), files, local.read(), local.sentences(), options, communicator, watch, owned);
    owner_table = &owned.table;
    owner_distinct = owned.distinct;
  }

  // 3. Select at the owner, and 4. allgather the owners' selections.
  const Pool pool = gather_pool(*owner_table, options, communicator, watch);
  // (normalized mode at several ranks: counted in round 1, before the cut to the pool)
  const std::uint64_t local_qualified = !exact && world_size > 1 ? owned.qualified : pool.owner_qualified;
  std::vector<const Candidate*> chosen;
  if (exact) {
    for (const Candidate& candidate : pool.candidates) chosen.push_back(&candidate);
  } else {
    std::vector<std::size_t> picks =
        options.selection == Selection::kCoverage
            ? choose_by_coverage(files, options, pool.candidates, local.groups(), local.mined_groups(), communicator)
            : choose_by_support(pool.candidates, options);
    for (std::size_t i : picks) chosen.push_back(&pool.candidates[i]);
  }

  // 5. Counts over the job.
  std::vector<std::uint64_t> counts = {owner_distinct, local_qualified, local.pruned(), local.prune_rounds()};
  communicator.allreduce(counts, ReduceOp::kSum);
  result.global_candidates = counts[0];
  result.qualified = counts[1];
  result.pruned_candidates = counts[2];
  result.corpus = reduce_stats(local.stats(), communicator);
  result.seconds_reduce = watch.seconds();
  if (counts[3] > 0) {
    log_warn("candidate cap ({} per rank) reached: {} rare candidates dropped in {} round(s) over all ranks; "
              "supports are lower bounds and rare patterns may be missing",
              options.max_candidates, counts[2], counts[3]);
  }
  fill_handbook(chosen, counts, files, options, world_size, result);
  watch.reset();
  if (exact) {
    for (const Pattern& pattern : result.handbook.patterns) result.pattern_sentences.push_back({pattern.text});
  } else {
    choose_instructions(files, options, communicator, result);
  }
  result.seconds_instructions = watch.seconds();
  std::uint64_t full_sentences = 0;
  for (const Pattern& pattern : result.handbook.patterns) full_sentences += is_full_sentence(pattern.instruction) ? 1 : 0;
  result.handbook.stats["full_sentences"] = full_sentences;
  return result;
}

Coverage holdout_coverage(const std::vector<Pattern>& patterns, const std::vector<std::string>& holdout_files,
                          const ReadOptions& read, Communicator& communicator) {
  std::vector<std::string> normalized_patterns;
  for (const Pattern& pattern : patterns) {
    std::string text = normalize(pattern.text);
    if (!text.empty()) normalized_patterns.push_back(std::move(text));
  }
  std::vector<std::uint64_t> counts = {0, 0};
  read_corpus(holdout_files, read, communicator, [&](const Record& record) {
    std::string text = normalize(record.reasoning);
    ++counts[0];
    for (const std::string& pattern : normalized_patterns) {
      if (contains_word_aligned(text, pattern)) {
        ++counts[1];
        break;
      }
    }
  });
  communicator.allreduce(counts, ReduceOp::kSum);
  return {counts[0], counts[1]};
}

}  // namespace metareuse
