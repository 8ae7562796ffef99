// The registry of device communicators: one per host communicator, created on
// first use, destroyed by release_device_communicators() (the Runtime calls it
// before MPI_Finalize). Built with or without NCCL; without, it says how to
// get the backend.
#include "metareuse/distributed/device_communicator.h"

#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

struct Entry {
  Communicator* host;
  int rank;
  int size;
  std::unique_ptr<DeviceCommunicator> device;
};

std::mutex g_mutex;
std::vector<Entry> g_entries;
// dist.collective_timeout, for communicators made from now on.
std::atomic<double> g_timeout{600.0};

}  // namespace

bool device_communicator_available() {
#if defined(METAREUSE_WITH_NCCL)
  return true;
#else
  return false;
#endif
}

DeviceCommunicator& device_communicator(Communicator& host, int device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto it = g_entries.begin(); it != g_entries.end(); ++it) {
    if (it->host != &host) continue;
    if (it->rank != host.rank() || it->size != host.size()) {
      // A new communicator at a freed one's address: the old entry is stale.
      g_entries.erase(it);
      break;
    }
    if (it->device->device() != device) {
      throw Error(fmt::format("rank {}: this communicator drives CUDA device {}, not {}; one rank uses one device",
                              host.rank(), it->device->device(), device));
    }
    return *it->device;
  }
#if defined(METAREUSE_WITH_NCCL)
  g_entries.push_back({&host, host.rank(), host.size(), make_nccl_communicator(host, device, g_timeout.load())});
  return *g_entries.back().device;
#else
  (void)device;
  throw Error(fmt::format(
      "rank {}: collectives on CUDA tensors need the NCCL backend, and this build has none: reconfigure with "
      "-DMETAREUSE_WITH_NCCL=ON against a CUDA libtorch (see README, GPU)",
      host.rank()));
#endif
}

void set_device_collective_timeout(double seconds) { g_timeout.store(seconds); }

std::string check_device_communicators(double timeout_seconds) {
  std::unique_lock<std::mutex> lock(g_mutex, std::try_to_lock);
  if (!lock.owns_lock()) return "";
  for (const Entry& entry : g_entries) {
    std::string message = entry.device->check_progress(timeout_seconds);
    if (!message.empty()) return message;
  }
  return "";
}

void release_device_communicators() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_entries.clear();
}

}  // namespace metareuse
