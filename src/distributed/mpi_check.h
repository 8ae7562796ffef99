// The one check for every MPI call: records the call, file, line and rank, and
// throws metareuse::Error. Private to src/distributed.
#pragma once

#include <mpi.h>

namespace metareuse::distributed_detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
}  // namespace metareuse::distributed_detail

#define MR_CHECK_MPI(call)                                                            \
  do {                                                                                \
    int mr_mpi_status_ = (call);                                                      \
    if (mr_mpi_status_ != MPI_SUCCESS) {                                              \
      ::metareuse::distributed_detail::throw_mpi_error(mr_mpi_status_, #call, __FILE__, __LINE__); \
    }                                                                                 \
  } while (0)
