// Normalized mode's choice of the top_k patterns from the pool of frequent
// candidates (the same pool, in pattern order, on every rank): greedily by the
// records they cover, or by support. Either way a pattern inside a longer one
// found in nearly as many records is left out (the longer says the same and
// more), and no chosen pattern contains another.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "candidate_table.h"  // Candidate
#include "metareuse/patterns/miner.h"
#include "record_groups.h"

namespace metareuse {
class Communicator;
}

namespace metareuse::patterns_detail {

// Coverage selection (collective): indices into `pool`, in the order chosen.
// `mined_groups`: the groups this rank mined (its own, or those it owns after
// the exchange); `groups`: the ones it read, which tell the records it mined
// one by one.
std::vector<std::size_t> choose_by_coverage(const std::vector<std::string>& files, const MiningOptions& options,
                                            const std::vector<Candidate>& pool, const RecordGroups& groups,
                                            const RecordGroups& mined_groups, Communicator& communicator);

// Support selection: indices into `pool`, in pattern order.
std::vector<std::size_t> choose_by_support(const std::vector<Candidate>& pool, const MiningOptions& options);

}  // namespace metareuse::patterns_detail
