#include "selection.h"

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/text.h"
#include "pool_matcher.h"

namespace metareuse::patterns_detail {
namespace {

// contained[p]: the pool patterns that occur word-aligned in pool[p]'s text
// (contains_word_aligned's rule; p itself included), ascending. One matcher
// run per pattern instead of a search for every pair.
using Containment = std::vector<std::vector<std::uint32_t>>;
Containment pool_containment(const std::vector<Candidate>& pool, const PoolMatcher& matcher) {
  Containment contained(pool.size());
  for (std::size_t p = 0; p < pool.size(); ++p) {
    matcher.match(pool[p].view(), contained[p]);
    std::sort(contained[p].begin(), contained[p].end());
    contained[p].erase(std::unique(contained[p].begin(), contained[p].end()), contained[p].end());
  }
  return contained;
}

bool contains(const Containment& contained, std::size_t longer, std::size_t shorter) {
  return std::binary_search(contained[longer].begin(), contained[longer].end(), static_cast<std::uint32_t>(shorter));
}

// Step 1 of either selection: marks each pool pattern inside a longer one
// found in nearly as many records (`records[i]` for pool[i]): the longer says
// the same and more.
std::vector<bool> absorbed_patterns(const std::vector<Candidate>& pool, const Containment& contained,
                                    const std::vector<std::uint64_t>& records, double ratio) {
  std::vector<bool> absorbed(pool.size(), false);
  for (std::size_t longer = 0; longer < pool.size(); ++longer) {
    for (std::uint32_t shorter : contained[longer]) {
      if (pool[longer].length <= pool[shorter].length) continue;
      if (static_cast<double>(records[longer]) < ratio * static_cast<double>(records[shorter])) continue;
      absorbed[shorter] = true;
    }
  }
  return absorbed;
}

bool overlaps_any(std::size_t candidate, const std::vector<std::size_t>& chosen, const Containment& contained) {
  return std::any_of(chosen.begin(), chosen.end(), [&](std::size_t kept) {
    return contains(contained, kept, candidate) || contains(contained, candidate, kept);
  });
}

// The pool patterns each unit of this rank holds. A unit is a group of records
// with one normalised text (weight: its record count) or a record outside the
// groups (weight 1).
struct Units {
  // patterns[offsets[u] .. offsets[u + 1]): pool indices in unit u, ascending.
  std::vector<std::uint32_t> patterns;
  std::vector<std::uint64_t> offsets = {0};
  std::vector<std::uint32_t> weights;

  std::size_t size() const { return weights.size(); }

  // sums[p] += the weight of each unit that holds pattern p and is not `skipped`.
  void add_weights(const std::vector<bool>& skipped, std::vector<std::uint64_t>& sums) const {
    for (std::size_t u = 0; u < size(); ++u) {
      if (skipped[u]) continue;
      for (std::uint64_t i = offsets[u]; i < offsets[u + 1]; ++i) sums[patterns[i]] += weights[u];
    }
  }
};

// The second pass: finds which pool patterns each unit holds, by the rule
// coverage is measured with (PoolMatcher). Collective.
Units match_units(const std::vector<std::string>& files, const MiningOptions& options, const PoolMatcher& matcher,
                  const RecordGroups& groups, const RecordGroups& mined_groups, Communicator& communicator) {
  Units units;
  // Units are matched kLanes at a time (PoolMatcher::match_many), in order.
  constexpr std::size_t kLanes = PoolMatcher::kLanes;
  std::vector<std::uint32_t> found[kLanes];
  std::string texts[kLanes];
  std::string_view views[kLanes];
  std::uint32_t weights[kLanes];
  std::size_t waiting = 0;
  auto flush = [&]() {
    for (std::size_t lane = 0; lane < waiting; ++lane) {
      found[lane].clear();
      views[lane] = texts[lane];
    }
    matcher.match_many(views, found, waiting);
    for (std::size_t lane = 0; lane < waiting; ++lane) {
      std::sort(found[lane].begin(), found[lane].end());
      found[lane].erase(std::unique(found[lane].begin(), found[lane].end()), found[lane].end());
      units.patterns.insert(units.patterns.end(), found[lane].begin(), found[lane].end());
      units.offsets.push_back(units.patterns.size());
      units.weights.push_back(weights[lane]);
    }
    waiting = 0;
  };
  // Coverage is measured on normalize()'s form, whose line breaks are spaces.
  auto queue = [&](std::string_view normalized_lines, std::uint32_t weight) {
    std::string& text = texts[waiting];
    text.assign(normalized_lines.data(), normalized_lines.size());
    std::replace(text.begin(), text.end(), '\n', ' ');
    weights[waiting] = weight;
    if (++waiting == kLanes) flush();
  };
  for (std::size_t index = 0; index < mined_groups.size(); ++index) {
    queue(RecordGroups::text(mined_groups[index]), mined_groups[index].count);
  }
  // A second pass over each rank's share when some rank mined records one by
  // one (read_corpus is collective: every rank takes part or none).
  std::vector<std::uint64_t> incomplete = {groups.complete() ? 0u : 1u};
  communicator.allreduce(incomplete, ReduceOp::kMax);
  if (incomplete[0] != 0) {
    ReadOptions quiet = options.read;
    quiet.max_reported_per_rank = 0;  // the first pass reported them
    quiet.number_lines_after = true;  // the keys are not used here
    std::string normalized;
    read_corpus(files, quiet, communicator, [&](const Record& record) {
      normalize_lines(record.reasoning, normalized);
      if (groups.find(normalized, hash_text(normalized)) == RecordGroups::kNone) queue(normalized, 1);
    });
  }
  flush();
  return units;
}

// Greedy maximum coverage over the units (collective): each round takes the
// pool pattern found in the most records not yet covered (summed over ranks,
// so the choice is the same at any rank count; ties go to the pattern order),
// never an absorbed one, nor one that contains or is contained in a chosen one.
std::vector<std::size_t> greedy_cover(const Units& units, const std::vector<Candidate>& pool,
                                      const std::vector<bool>& absorbed, const Containment& contained,
                                      std::size_t top_k, Communicator& communicator) {
  std::vector<bool> covered(units.size(), false);
  std::vector<std::size_t> chosen;
  std::vector<std::uint64_t> gains(pool.size());
  while (top_k == 0 || chosen.size() < top_k) {
    std::fill(gains.begin(), gains.end(), 0);
    units.add_weights(covered, gains);
    communicator.allreduce(gains, ReduceOp::kSum);
    std::size_t best = pool.size();
    for (std::size_t i = 0; i < pool.size(); ++i) {
      if (absorbed[i] || gains[i] == 0 || (best != pool.size() && gains[i] <= gains[best])) continue;
      if (std::find(chosen.begin(), chosen.end(), i) != chosen.end() || overlaps_any(i, chosen, contained)) continue;
      best = i;
    }
    if (best == pool.size()) break;  // nothing left adds coverage
    chosen.push_back(best);
    for (std::size_t u = 0; u < units.size(); ++u) {
      if (covered[u]) continue;
      for (std::uint64_t i = units.offsets[u]; i < units.offsets[u + 1]; ++i) {
        if (units.patterns[i] == best) covered[u] = true;
      }
    }
  }
  // Fill up in pattern order when coverage alone runs out.
  for (std::size_t i = 0; i < pool.size() && (top_k == 0 || chosen.size() < top_k); ++i) {
    if (!absorbed[i] && std::find(chosen.begin(), chosen.end(), i) == chosen.end() &&
        !overlaps_any(i, chosen, contained)) {
      chosen.push_back(i);
    }
  }
  return chosen;
}

}  // namespace

// Absorbed patterns are found by the records each pattern is found in. The
// units come from a second pass over this rank's share rather than from the
// phrase candidates' counts: a pattern that starts or ends with "<num>" or "="
// also occurs after "$" or before "." or "/", which the candidates would miss.
std::vector<std::size_t> choose_by_coverage(const std::vector<std::string>& files, const MiningOptions& options,
                                            const std::vector<Candidate>& pool, const RecordGroups& groups,
                                            const RecordGroups& mined_groups, Communicator& communicator) {
  PoolMatcher matcher(pool);
  const Containment contained = pool_containment(pool, matcher);
  const Units units = match_units(files, options, matcher, groups, mined_groups, communicator);
  std::vector<std::uint64_t> pattern_records(pool.size(), 0);
  units.add_weights(std::vector<bool>(units.size(), false), pattern_records);
  communicator.allreduce(pattern_records, ReduceOp::kSum);
  const std::vector<bool> absorbed = absorbed_patterns(pool, contained, pattern_records, options.containment_ratio);
  return greedy_cover(units, pool, absorbed, contained, options.top_k, communicator);
}

// Absorbed patterns are found by support; the first top_k in pattern order
// that are left, of which none contains another.
std::vector<std::size_t> choose_by_support(const std::vector<Candidate>& pool, const MiningOptions& options) {
  std::vector<std::uint64_t> supports;
  for (const Candidate& candidate : pool) supports.push_back(candidate.support);
  const Containment contained = pool_containment(pool, PoolMatcher(pool));
  const std::vector<bool> absorbed = absorbed_patterns(pool, contained, supports, options.containment_ratio);
  std::vector<std::size_t> chosen;
  for (std::size_t i = 0; i < pool.size() && (options.top_k == 0 || chosen.size() < options.top_k); ++i) {
    if (!absorbed[i] && !overlaps_any(i, chosen, contained)) chosen.push_back(i);
  }
  return chosen;
}

}  // namespace metareuse::patterns_detail
