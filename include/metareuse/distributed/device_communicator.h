// Collectives on CUDA device memory (the NCCL backend), behind the same
// Communicator interface as the MPI backend. This header is torch-free and
// NCCL-free: CUDA streams travel as void* (a cudaStream_t), so code outside
// src/distributed never includes nccl.h or cuda_runtime.h.
//
// Ordering: every collective runs on the communicator's own stream. It first
// waits (with an event) for the work already queued on the compute stream, and
// the compute stream then waits (with another event) for the collective: at
// once for the blocking calls, at the handle's wait() for a started one
// (start_allgather, start_reduce_scatter), so compute queued in between runs
// beside it. The host never blocks, and memory the caching allocator frees on
// the compute stream is not reused before the collective has read it (a
// started collective's tensors are held until its wait, tensor_comm.h).
#pragma once

#include <memory>

#include "metareuse/distributed/communicator.h"

namespace metareuse {

class DeviceCommunicator : public Communicator {
 public:
  // The CUDA device this communicator's rank drives.
  virtual int device() const = 0;
  // The stream (a cudaStream_t; nullptr: the legacy default stream) that the
  // next collectives are ordered against.
  virtual void set_compute_stream(void* stream) = 0;
  // Blocks until every collective queued so far has finished. A collective
  // still running after `timeout_seconds`, or an asynchronous NCCL error,
  // aborts the NCCL communicator and throws metareuse::Error naming the rank,
  // the device and the last collective, so a hung peer cannot hang this rank.
  virtual void wait(double timeout_seconds) = 0;
  // For the collective watchdog, from its own thread: "" while every queued
  // collective has finished or the oldest unfinished one has run for at most
  // `timeout_seconds` (0: no bound); else, after aborting the NCCL
  // communicator, a message naming the rank, the device and that collective
  // (or the asynchronous NCCL error). Never blocks and never throws.
  virtual std::string check_progress(double timeout_seconds) = 0;
};

// True when this build has the NCCL backend (METAREUSE_WITH_NCCL).
bool device_communicator_available();

// The device communicator over the same ranks as `host`, driving CUDA device
// `device`. Created on first use: a collective over `host` (rank 0 makes the
// ncclUniqueId and broadcasts it over `host`, then every rank calls
// a non-blocking ncclCommInitRankConfig bounded by the collective timeout), so
// every rank must ask at the same point. Later calls
// return the same one; asking for another device on the same host
// communicator throws. Without NCCL in the build it throws metareuse::Error
// saying how to build it.
DeviceCommunicator& device_communicator(Communicator& host, int device);

// The bound on communicator init and on the collectives, in seconds (0: none):
// dist.collective_timeout, set by Runtime::set_collective_timeout; 600 until
// then. Applies to device communicators created afterwards.
void set_device_collective_timeout(double seconds);

// The watchdog's check of every device communicator (check_progress): the
// first message, or "" when all are on time. Skips a check rather than wait
// while a communicator is being created (its init has its own deadline).
std::string check_device_communicators(double timeout_seconds);

// Destroys every device communicator made so far. The Runtime calls it before
// MPI_Finalize, so NCCL communicators never outlive the job's MPI.
void release_device_communicators();

// The NCCL backend itself (defined only with METAREUSE_WITH_NCCL); most code
// goes through device_communicator() instead. `collective_timeout_seconds`
// bounds the communicator's init, every call that NCCL leaves in progress,
// and barrier(); see wait().
std::unique_ptr<DeviceCommunicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                           double collective_timeout_seconds = 600.0);

}  // namespace metareuse
