// The MPI backend of Communicator (CPU memory). Private to src/distributed.
#pragma once

#include <mpi.h>

#include <memory>

#include "metareuse/distributed/communicator.h"

namespace metareuse::distributed_detail {

// Duplicates `parent` so metareuse's traffic never mixes with anyone else's;
// the duplicate is freed with the communicator.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm parent);

}  // namespace metareuse::distributed_detail
