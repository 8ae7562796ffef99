#include "metareuse/model/threads.h"

#include <ATen/Parallel.h>  // at::set_num_threads
#include <fmt/format.h>
#include <sched.h>           // sched_getaffinity
#include <unistd.h>          // sysconf

#include <algorithm>
#include <cstdlib>  // getenv, atoi

#include "metareuse/core/log.h"

namespace metareuse {

ThreadChoice choose_intra_op_threads(int requested, int omp_num_threads, int ranks_on_node, int node_cores,
                                     int usable_cores) {
  if (requested > 0) return {requested, "run.threads"};
  if (omp_num_threads > 0) return {omp_num_threads, "OMP_NUM_THREADS, with run.threads=0"};
  const int ranks = std::max(1, ranks_on_node);
  const int shared = std::max(1, node_cores / ranks);
  const int threads = std::max(1, std::min(shared, usable_cores));
  return {threads, fmt::format("run.threads=0: {} core(s) / {} rank(s) on this node{}", node_cores, ranks,
                               usable_cores < shared ? fmt::format(", {} usable by this rank", usable_cores) : "")};
}

void set_intra_op_threads(int requested, int ranks_on_node) {
  const int node_cores = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t mask;
  CPU_ZERO(&mask);
  const int usable = sched_getaffinity(0, sizeof(mask), &mask) == 0 ? CPU_COUNT(&mask) : node_cores;
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const int omp_threads = omp != nullptr ? std::max(0, std::atoi(omp)) : 0;
  const ThreadChoice choice = choose_intra_op_threads(requested, omp_threads, ranks_on_node, node_cores, usable);
  at::set_num_threads(choice.threads);
  log_info("torch threads per rank: {} ({})", choice.threads, choice.reason);
}

}  // namespace metareuse
