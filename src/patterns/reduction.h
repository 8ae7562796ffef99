// The exchanges between ranks after the local count: normalized mode's group
// exchange, the exact reduction of the candidates to their owner ranks, and
// the allgather of the owners' selections into one pool that every rank holds.
//
// The reduction runs in two rounds. Round 1 sends each candidate's hash and
// support to the hash's owner rank, which sums them; the hashes whose sum
// reaches min_support are shared with every rank. Round 2 sends the whole
// candidates (text, kinds, examples) of those hashes only, and the owner
// merges them by text (exact mode) or by hash (normalized mode). Most
// candidates occur once, so round 1 moves 16 bytes for each of them instead
// of its text. A hash collision can only add counts in round 1: it may let a
// hash through, never hold a qualifying one back, and round 2 separates the
// texts again, so the result stays exact.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "candidate_table.h"  // Candidate, CandidateTable
#include "candidates.h"       // ExactSentences
#include "metareuse/core/timing.h"
#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/miner.h"
#include "record_groups.h"

namespace metareuse {
class Communicator;
}

namespace metareuse::patterns_detail {

// Sends out[offsets of out_counts[r]] to rank r and receives every rank's
// bytes for this one into `in`, in rank order (an alltoallv whose receive
// counts come from an allgather of the send counts). Collective.
void exchange_bytes(Communicator& communicator, const char* out, const std::vector<std::size_t>& out_counts,
                    std::vector<char>& in);

// exchange_bytes() for one buffer per destination rank (emptied on the way).
void exchange_buffers(Communicator& communicator, std::vector<std::vector<char>>& outgoing, std::vector<char>& in);

// The groups a rank mines in normalized mode at several ranks.
struct OwnedGroups {
  std::vector<char> arriving;  // the groups other ranks sent here (RecordGroups' wire layout)
  RecordGroups groups{0};      // its texts are borrowed from the groups read and from `arriving`
};

// Normalized mode at several ranks (collective): the ranks often hold the same
// texts (the same shapes of reasoning), so the groups of two records or more
// go to an owner rank by their hash, which merges them; every text is then
// mined by one rank instead of by each. Groups of one record stay where they
// are (a corpus without repeats moves nothing). Mining a text on two ranks
// would give the same counts, only twice the work: this split is for speed.
void exchange_groups(const RecordGroups& read_here, Communicator& communicator, OwnedGroups& owned);

// The candidates a rank owns after the reduction.
struct OwnedCandidates {
  explicit OwnedCandidates(bool by_words) : table(by_words) {}
  std::vector<char> received;   // round 2's candidates (wire format); the table's texts point into it
  CandidateTable table;
  std::uint64_t distinct = 0;   // round 1: distinct hashes owned here
  std::uint64_t qualified = 0;  // round 1: owned hashes with support >= min_support
};

// Rounds 1 and 2 (collective, at several ranks) of the local candidates in
// `table`; `read` and `sentences` are the counting's, for the candidates that
// exact mode's lazy table kept without their text.
void reduce_to_owners(const CandidateTable& table, const std::vector<std::string>& files,
                      const ReadOptions& read, const ExactSentences& sentences, const MiningOptions& options,
                      Communicator& communicator, const Stopwatch& watch, OwnedCandidates& owned);

// Every owner's candidates with enough support, gathered on every rank.
struct Pool {
  std::vector<char> bytes;            // the owners' selections (wire format); the candidates' texts point into it
  std::vector<Candidate> candidates;  // in pattern order, at most the pool size
  std::uint64_t owner_qualified = 0;  // this owner's candidates with enough support, before the cut
};

// Selects at the owner (the candidates of `owner_table` with enough support,
// in pattern order, at most the pool size: top_k in exact mode), then
// allgathers the owners' selections, which every rank orders and cuts the
// same way. Collective.
Pool gather_pool(const CandidateTable& owner_table, const MiningOptions& options, Communicator& communicator,
                 const Stopwatch& watch);

}  // namespace metareuse::patterns_detail
