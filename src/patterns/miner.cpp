#include "metareuse/patterns/miner.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <unordered_set>

#include "candidate_table.h"
#include "candidates.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/dist/communicator.h"
#include "metareuse/patterns/text.h"
#include "pool_matcher.h"
#include "record_groups.h"
#include "selection.h"
#include "wire.h"

namespace metareuse::patterns {
namespace {

// Sends out[offsets of out_counts[r]] to rank r and receives every rank's
// bytes for this one into `in`, in rank order (an alltoallv whose receive
// counts come from an allgather of the send counts).
void exchange_bytes(Communicator& communicator, const char* out, const std::vector<std::size_t>& out_counts,
                    std::vector<char>& in) {
  const int world_size = communicator.size();
  const int rank = communicator.rank();
  std::vector<std::uint64_t> my_counts(out_counts.begin(), out_counts.end());
  std::vector<std::uint64_t> matrix(static_cast<std::size_t>(world_size) * world_size);
  communicator.allgather(my_counts.data(), matrix.data(), world_size, DType::kUInt64);
  std::vector<std::size_t> in_counts(world_size);
  std::size_t total = 0;
  for (int r = 0; r < world_size; ++r) {
    in_counts[r] = matrix[static_cast<std::size_t>(r) * world_size + rank];
    total += in_counts[r];
  }
  in.resize(total);
  communicator.alltoallv(out, out_counts, in.data(), in_counts, DType::kUInt8);
}

// exchange_bytes() for one buffer per destination rank (emptied on the way).
void exchange_buffers(Communicator& communicator, std::vector<std::vector<char>>& outgoing, std::vector<char>& in) {
  std::vector<std::size_t> out_counts(outgoing.size());
  std::vector<char> packed;
  for (std::size_t r = 0; r < outgoing.size(); ++r) {
    out_counts[r] = outgoing[r].size();
    packed.insert(packed.end(), outgoing[r].begin(), outgoing[r].end());
  }
  outgoing = {};
  exchange_bytes(communicator, packed.data(), out_counts, in);
}

// Round 1 of the reduction: a candidate's hash and its support on one rank.
struct HashCount {
  std::uint64_t hash;
  std::uint64_t support;
};

// Calls visit(hash, total support) once for each distinct hash among `count`
// HashCount records at `bytes` (any order, any alignment, supports >= 1).
// The records are first spread into 256 buckets by the top byte of the hash,
// then each bucket is summed in a small open-addressing table that stays in
// cache: a few passes over the records, where sorting them took three times
// as long (measured on 1.2 M records: sort 94 ms, this 29 ms). The hashes are
// uniform (XXH3), within an owner rank too (the owner comes from bits 32 and
// up, modulo the rank count).
template <typename Visit>
void sum_by_hash(const char* bytes, std::size_t count, Visit&& visit) {
  constexpr std::size_t kBuckets = 256;
  auto record = [bytes](std::size_t i) {
    HashCount entry;
    std::memcpy(&entry, bytes + i * sizeof(HashCount), sizeof(HashCount));
    return entry;
  };
  std::vector<std::size_t> starts(kBuckets + 1, 0);
  for (std::size_t i = 0; i < count; ++i) ++starts[(record(i).hash >> 56) + 1];
  for (std::size_t b = 1; b <= kBuckets; ++b) starts[b] += starts[b - 1];
  std::vector<HashCount> bucketed(count);
  std::vector<std::size_t> next(starts.begin(), starts.end() - 1);
  for (std::size_t i = 0; i < count; ++i) {
    HashCount entry = record(i);
    bucketed[next[entry.hash >> 56]++] = entry;
  }
  std::vector<HashCount> slots;  // support 0: empty
  for (std::size_t b = 0; b < kBuckets; ++b) {
    std::size_t capacity = 16;
    while (capacity < 2 * (starts[b + 1] - starts[b])) capacity *= 2;
    slots.assign(capacity, HashCount{0, 0});
    const std::size_t mask = capacity - 1;
    for (std::size_t i = starts[b]; i < starts[b + 1]; ++i) {
      const HashCount& entry = bucketed[i];
      std::size_t position = entry.hash & mask;
      while (slots[position].support != 0 && slots[position].hash != entry.hash) position = (position + 1) & mask;
      slots[position].hash = entry.hash;
      slots[position].support += entry.support;
    }
    for (const HashCount& slot : slots) {
      if (slot.support != 0) visit(slot.hash, slot.support);
    }
  }
}

Pattern to_pattern(const Candidate& candidate, const std::vector<std::string>& files) {
  Pattern pattern;
  pattern.text = std::string(candidate.view());
  pattern.support = candidate.support;
  pattern.kind = (candidate.kinds & kKindSentence) != 0 ? "sentence" : "phrase";
  for (std::size_t i = 0; i < candidate.example_count; ++i) {
    pattern.examples.push_back(corpus::record_key_name(candidate.examples[i], files));
  }
  pattern.behavior = behavior_name(pattern.text);
  return pattern;
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
  MiningResult result;
  Stopwatch watch;

  const bool exact = options.mode == MiningMode::kExact;
  // 1. Local counting over this rank's share.
  CandidateTable table(/*by_words=*/!exact);
  // Exact mode keeps no text for a sentence seen once (CandidateTable's lazy
  // mode) unless every candidate qualifies anyway or the cap may prune.
  const bool lazy = exact && options.min_support >= 2 && options.max_candidates == 0;
  table.set_lazy(lazy);
  std::size_t exact_reserve = 0;
  if (exact) {
    // Sized from this rank's share of the bytes (GSM8K-like text has about one
    // distinct sentence per 190 bytes of JSON), capped at 32 MB of slots: the
    // table then skips most of its doublings, each of which re-hashed every
    // candidate into freshly zeroed memory. A smaller corpus of sentences
    // only leaves slots empty; a larger one still grows.
    std::uint64_t bytes = 0;
    for (const std::string& file : files) {
      std::error_code error;
      const auto size = std::filesystem::file_size(file, error);
      if (!error) bytes += size;
    }
    exact_reserve = static_cast<std::size_t>(std::min<std::uint64_t>(bytes / static_cast<std::uint64_t>(world_size) / 192, 1400000));
    table.reserve(exact_reserve);
  }
  const ExactSentences exact_candidates{options.test_hash_mask};
  NormalizedMiner normalized_miner(options);
  std::uint64_t pruned = 0;
  std::uint64_t prune_rounds = 0;
  // A record's distinct candidates are gathered first, then counted with
  // their slots prefetched together: the misses overlap instead of queueing.
  RecordCandidates record_candidates(/*by_words=*/!exact);
  RecordGroups groups(options.group_bytes);  // normalized mode
  std::string normalized_text;
  auto cap_table = [&]() {
    if (options.max_candidates != 0 && table.size() >= options.max_candidates) {
      // Graceful degradation: drop the rarest local candidates until a quarter is free.
      std::uint32_t threshold = 1;
      while (table.size() > options.max_candidates * 3 / 4) {
        pruned += table.prune(threshold++);
      }
      ++prune_rounds;
    }
  };
  auto visit = [&](const corpus::Record& record) {
    record_candidates.clear();
    if (exact) {
      exact_candidates(record.reasoning, [&](std::string_view sentence, std::uint64_t hash) {
        record_candidates.add(sentence, hash, kKindSentence);
      });
      if (table.lazy()) {
        table.count_record_lazy(record_candidates, record.key, record.offset);
        return;
      }
    } else {
      normalize_lines(record.reasoning, normalized_text);
      if (groups.add(normalized_text, hash_text(normalized_text), record.key)) return;  // mined after the read
      normalized_miner.mine(normalized_text, record_candidates);
    }
    table.count_record(record_candidates, record.key);
    cap_table();
  };
  // The lines are numbered after the read: the keys counted during it are
  // local to this rank and made global once it is over (globalize_keys), so
  // no rank waits for a lower one to count its lines first.
  corpus::ReadOptions read = options.read;
  read.number_lines_after = true;
  corpus::CorpusStats local_stats = corpus::read_corpus(files, read, communicator, visit);
  if (lazy) {
    // The first occurrence of each candidate seen twice or more was counted
    // by its hash alone: read those records again and compare the texts. Two
    // sentences with one 64-bit hash are not expected in practice, but exact
    // mode promises the reference's counts, so then every rank counts again
    // with all texts kept.
    bool collided = table.collision() || !first_occurrences_match(table, files, read, exact_candidates);
    if (communicator.allreduce_value<std::uint64_t>(collided ? 1 : 0, ReduceOp::kMax) != 0) {
      log::warn("exact mode: two different sentences share a 64-bit hash on some rank; counting again with every text kept");
      table.clear();
      table.set_lazy(false);
      table.reserve(exact_reserve);
      local_stats = corpus::read_corpus(files, read, communicator, visit);
      result.recounted = true;
    }
  }
  const bool lower_ranks_have_lines =
      std::any_of(local_stats.line_base.begin(), local_stats.line_base.end(), [](std::uint64_t base) { return base != 0; });
  if (lower_ranks_have_lines) {
    table.globalize_keys(local_stats);
    groups.globalize_keys(local_stats);
  }
  // Normalized mode at several ranks: the ranks often hold the same texts (the
  // same shapes of reasoning), so the groups of two records or more go to an
  // owner rank by their hash, which merges them; every text is then mined by
  // one rank instead of by each. Groups of one record stay where they are
  // (a corpus without repeats moves nothing). Mining a text on two ranks would
  // give the same counts, only twice the work: this split is for speed.
  std::vector<char> arriving;
  RecordGroups owned_groups(0);  // its texts are borrowed from `groups` and `arriving`
  const bool exchange_groups = !exact && world_size > 1;
  if (exchange_groups) {
    std::vector<std::vector<char>> outgoing(world_size);
    for (std::size_t index = 0; index < groups.size(); ++index) {
      const RecordGroups::Group& group = groups[index];
      if (group.count < 2) {
        owned_groups.merge(RecordGroups::text(group), group.hash, group.count, group.keys, group.key_count);
        continue;
      }
      WireWriter out(outgoing[static_cast<std::size_t>((group.hash >> 17) % static_cast<std::uint64_t>(world_size))]);
      RecordGroups::write_group(out, group);
    }
    exchange_buffers(communicator, outgoing, arriving);
    owned_groups.merge_written({arriving.data(), arriving.size()});
  }
  const RecordGroups& mined_groups = exchange_groups ? owned_groups : groups;
  // Normalized mode: each group of records with one normalised text, mined
  // once and counted for all of them. After the read, so the records mined
  // alone were counted in key order (count_record's examples rely on it).
  for (std::size_t index = 0; index < mined_groups.size(); ++index) {
    const RecordGroups::Group& group = mined_groups[index];
    record_candidates.clear();
    normalized_miner.mine(RecordGroups::text(group), record_candidates);
    table.count_records(record_candidates, group.count, group.keys, group.key_count);
    cap_table();
  }
  if (!exact) {
    log::debug("normalized: {} local records in {} groups of equal normalised reasoning{}; {} groups mined here",
               local_stats.records, groups.size(),
               groups.complete() ? "" : " (the rest mined one by one: the group texts filled their memory)",
               mined_groups.size());
  }
  result.local_candidates = table.size();
  result.seconds_count = watch.seconds();
  watch.reset();

  // 2. Exact reduction, in two rounds. Round 1 sends each candidate's hash and
  // support to the hash's owner rank, which sums them; the hashes whose sum
  // reaches min_support are shared with every rank. Round 2 sends the whole
  // candidates (text, kinds, examples) of those hashes only, and the owner
  // merges them by text (exact mode) or by hash (normalized mode). Most
  // candidates occur once, so round 1 moves 16 bytes for each of them instead
  // of its text. A hash collision can only add counts in round 1: it may let a
  // hash through, never hold a qualifying one back, and round 2 separates the
  // texts again, so the result stays exact.
  CandidateTable owned(/*by_words=*/!exact);
  CandidateTable* owner_table = &table;
  std::uint64_t owner_distinct = table.size();
  std::uint64_t owner_qualified = 0;  // round 1: owned hashes with support >= min_support
  std::vector<char> received;
  if (world_size > 1) {
    auto owner_of_hash = [&](std::uint64_t hash) { return static_cast<int>((hash >> 32) % static_cast<std::uint64_t>(world_size)); };
    // Round 1.
    std::vector<std::size_t> send_counts(world_size, 0);
    table.for_each_slot([&](std::uint64_t hash, std::uint32_t) { send_counts[owner_of_hash(hash)] += sizeof(HashCount); });
    std::vector<std::size_t> offsets(world_size, 0);
    for (int r = 1; r < world_size; ++r) offsets[r] = offsets[r - 1] + send_counts[r - 1];
    std::vector<HashCount> send((offsets.back() + send_counts.back()) / sizeof(HashCount));
    table.for_each_slot([&](std::uint64_t hash, std::uint32_t support) {
      int owner = owner_of_hash(hash);
      send[offsets[owner] / sizeof(HashCount)] = {hash, support};
      offsets[owner] += sizeof(HashCount);
    });
    exchange_bytes(communicator, reinterpret_cast<const char*>(send.data()), send_counts, received);
    send = {};
    log::debug("reduction: round 1 exchanged at {:.3f} s", watch.seconds());
    std::vector<HashCount> qualifying;  // (hash, global support)
    owner_distinct = 0;
    sum_by_hash(received.data(), received.size() / sizeof(HashCount), [&](std::uint64_t hash, std::uint64_t support) {
      ++owner_distinct;
      if (support >= options.min_support) qualifying.push_back({hash, support});
    });
    received = {};
    log::debug("reduction: round 1 summed at {:.3f} s", watch.seconds());
    owner_qualified = qualifying.size();
    // Normalized mode identifies a candidate by its hash, so round 1's sums are
    // its global supports, and only the pool (the pool_size best, in pattern
    // order) goes on: round 2 needs the candidates whose support reaches the
    // pool_size-th best support (ties included, to be ordered by text). On a
    // corpus where most candidates recur, this sends thousands of texts instead
    // of every candidate. (Exact mode keeps every qualifying hash: there a
    // collision sums two texts' supports, which could push a text out of a cut.)
    if (!exact && options.pool_size != 0) {
      std::vector<std::uint64_t> best;
      for (const HashCount& entry : qualifying) best.push_back(entry.support);
      if (best.size() > options.pool_size) {
        std::nth_element(best.begin(), best.begin() + (options.pool_size - 1), best.end(), std::greater<>());
        best.resize(options.pool_size);
      }
      std::vector<std::uint64_t> all_best = communicator.allgatherv(best);
      if (all_best.size() >= options.pool_size) {
        std::nth_element(all_best.begin(), all_best.begin() + (options.pool_size - 1), all_best.end(), std::greater<>());
        const std::uint64_t threshold = all_best[options.pool_size - 1];
        qualifying.erase(std::remove_if(qualifying.begin(), qualifying.end(),
                                        [&](const HashCount& entry) { return entry.support < threshold; }),
                         qualifying.end());
      }
    }
    std::vector<std::uint64_t> qualifying_hashes;
    for (const HashCount& entry : qualifying) qualifying_hashes.push_back(entry.hash);
    qualifying = {};
    std::vector<std::uint64_t> all_qualifying = communicator.allgatherv(qualifying_hashes);
    log::debug("reduction: round 1 done, {} hashes qualify, at {:.3f} s", all_qualifying.size(), watch.seconds());

    // Round 2: the local candidates of the qualifying hashes, to their owners.
    std::vector<std::vector<char>> outgoing(world_size);
    auto send_candidate = [&](const Candidate& candidate) {
      WireWriter out(outgoing[owner_of_hash(candidate.hash)]);
      write_candidate(out, candidate);
    };
    struct LiteWanted {
      corpus::RecordKey key;  // the record that holds the candidate
      std::uint64_t offset;   // of the record's line
      std::uint64_t hash;
      bool sent;
    };
    std::vector<LiteWanted> lite_wanted;
    for (std::uint64_t hash : all_qualifying) {
      table.for_each_of_hash(hash, send_candidate);
      table.for_each_lite_of_hash(hash, [&](std::uint32_t ordinal) {
        const auto& where = table.lite_record(ordinal);
        lite_wanted.push_back({where.key, where.offset, hash, false});
      });
    }
    if (!lite_wanted.empty()) {
      // Candidates seen once on this rank have no text here: read their records again.
      std::size_t found = 0;
      read_records_again(files, read, lite_wanted, [&](const corpus::Record& record, auto first, auto last) {
        exact_candidates(record.reasoning, [&](std::string_view sentence, std::uint64_t hash) {
          for (auto it = first; it != last; ++it) {
            if (it->sent || it->hash != hash) continue;
            it->sent = true;  // a repeat of the sentence in this record is not counted again
            Candidate candidate;
            candidate.hash = hash;
            candidate.text = sentence.data();
            candidate.length = static_cast<std::uint32_t>(sentence.size());
            candidate.support = 1;
            candidate.kinds = kKindSentence;
            candidate.example_count = 1;
            candidate.examples[0] = record.key;
            send_candidate(candidate);
            ++found;
            break;
          }
        });
      });
      if (found != lite_wanted.size()) {
        throw InputError("exact mode: a record read again no longer holds the sentence it held (a corpus file changed while it was read)");
      }
    }
    exchange_buffers(communicator, outgoing, received);
    std::size_t arriving = 0;
    read_candidates({received.data(), received.size()}, [&](const Candidate&) { ++arriving; });
    owned.reserve(arriving);  // an upper bound: the same text may come from several ranks
    read_candidates({received.data(), received.size()}, [&](const Candidate& candidate) {
      owned.merge(candidate.view(), candidate.support, candidate.kinds, candidate.examples, candidate.example_count);
    });
    owner_table = &owned;
    log::debug("reduction: merged {} candidates at {:.2f} s", owned.size(), watch.seconds());
  }

  // 3. Select at the owner: enough support (and, normalized, enough words),
  // in pattern order, at most the pool size.
  std::vector<Candidate> qualified;
  // (normalized candidates have at least min_words words by construction)
  const auto min_support = static_cast<std::uint32_t>(std::min<std::uint64_t>(options.min_support, UINT32_MAX));
  owner_table->for_each([&](const Candidate& candidate) { qualified.push_back(candidate); }, min_support);
  // (normalized mode at several ranks: counted in round 1, before the cut to the pool)
  std::uint64_t local_qualified = !exact && world_size > 1 ? owner_qualified : qualified.size();
  std::size_t pool_size = exact ? options.top_k : options.pool_size;
  auto cut_to_pool = [&](std::vector<Candidate>& candidates) {
    if (pool_size != 0 && candidates.size() > pool_size) {
      std::partial_sort(candidates.begin(), candidates.begin() + pool_size, candidates.end(), pattern_before);
      candidates.resize(pool_size);
    } else {
      std::sort(candidates.begin(), candidates.end(), pattern_before);
    }
  };
  cut_to_pool(qualified);

  // 4. Allgather the owners' selections; every rank orders them the same way.
  std::vector<char> selection;
  WireWriter out(selection);
  for (const Candidate& candidate : qualified) write_candidate(out, candidate);
  std::vector<char> gathered = communicator.allgatherv(selection);
  std::vector<Candidate> pool;
  read_candidates({gathered.data(), gathered.size()}, [&](const Candidate& candidate) { pool.push_back(candidate); });
  cut_to_pool(pool);
  log::debug("reduction: pool of {} at {:.2f} s", pool.size(), watch.seconds());

  std::vector<const Candidate*> chosen;
  if (exact) {
    for (const Candidate& candidate : pool) chosen.push_back(&candidate);
  } else {
    std::vector<std::size_t> picks = options.selection == Selection::kCoverage
                                         ? choose_by_coverage(files, options, pool, groups, mined_groups, communicator)
                                         : choose_by_support(pool, options);
    for (std::size_t i : picks) chosen.push_back(&pool[i]);
  }

  // 5. Counts over the job.
  std::vector<std::uint64_t> counts = {owner_distinct, local_qualified, pruned, prune_rounds};
  communicator.allreduce(counts, ReduceOp::kSum);
  result.global_candidates = counts[0];
  result.qualified = counts[1];
  result.pruned_candidates = counts[2];
  result.corpus = corpus::reduce_stats(local_stats, communicator);
  result.seconds_reduce = watch.seconds();
  if (counts[3] > 0) {
    log::warn("candidate cap ({} per rank) reached: {} rare candidates dropped in {} round(s) over all ranks; "
              "supports are lower bounds and rare patterns may be missing",
              options.max_candidates, counts[2], counts[3]);
  }

  Handbook& handbook = result.handbook;
  handbook.records = result.corpus.records;
  handbook.mode = mining_mode_name(options.mode);
  handbook.exact_counts = counts[3] == 0;
  for (const Candidate* candidate : chosen) handbook.patterns.push_back(to_pattern(*candidate, files));
  // Behavior names must be unique to be usable as keys.
  std::unordered_set<std::string> names;
  for (Pattern& pattern : handbook.patterns) {
    std::string base = pattern.behavior;
    for (int suffix = 2; !names.insert(pattern.behavior).second; ++suffix) pattern.behavior = fmt::format("{}_{}", base, suffix);
  }
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
  return result;
}

Coverage holdout_coverage(const std::vector<Pattern>& patterns, const std::vector<std::string>& holdout_files,
                          const corpus::ReadOptions& read, Communicator& communicator) {
  std::vector<std::string> normalized_patterns;
  for (const Pattern& pattern : patterns) {
    std::string text = normalize(pattern.text);
    if (!text.empty()) normalized_patterns.push_back(std::move(text));
  }
  std::vector<std::uint64_t> counts = {0, 0};
  corpus::read_corpus(holdout_files, read, communicator, [&](const corpus::Record& record) {
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

}  // namespace metareuse::patterns
