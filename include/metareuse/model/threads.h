// torch's intra-op threads for one rank. By default torch takes every core of
// the machine in every process, so N ranks on one node run N x cores threads
// and slow each other down (the demo trained 7x slower with 2 threads per rank
// than with 1 on a 2-core machine at 2 ranks).
#pragma once

#include <string>

namespace metareuse {

struct ThreadChoice {
  int threads = 1;
  std::string reason;  // for the log: where the number came from
};

// `requested` (run.threads) when > 0; else `omp_num_threads` (the
// OMP_NUM_THREADS a launch script set, 0 when unset); else the node's cores
// shared by its `ranks_on_node` ranks, and no more than the cores this process
// may run on (a launcher that binds a rank to cores has already shared them);
// at least 1.
ThreadChoice choose_intra_op_threads(int requested, int omp_num_threads, int ranks_on_node, int node_cores,
                                     int usable_cores);

// Chooses from this machine's cores, sets torch's intra-op threads, logs the choice.
void set_intra_op_threads(int requested, int ranks_on_node);

}  // namespace metareuse
