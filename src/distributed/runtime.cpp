#include "metareuse/distributed/runtime.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <cstring>
#include <string>
#include <vector>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/device_communicator.h"
#include "mpi_check.h"
#include "mpi_communicator.h"
#include "poll.h"

namespace metareuse {
namespace {

Runtime* g_runtime = nullptr;

// The collective in flight, for the watchdog: its name and start time
// (steady-clock seconds; 0 when none is in flight).
std::atomic<const char*> g_operation{nullptr};
std::atomic<double> g_operation_start{0.0};
std::mutex g_label_mutex;
std::string g_label = "starting";

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* value = env(name);
  return value ? std::atoi(value) : fallback;
}

std::string host_name() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

}  // namespace

std::string detect_launcher() {
  if (env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK")) {
    // srun --mpi=pmix also sets PMIX_RANK; name the launcher the user typed.
    return env("SLURM_STEP_NUM_TASKS") ? "srun" : "mpirun";
  }
  if (env("SLURM_STEP_NUM_TASKS")) return "srun";
  return "none";
}

Runtime::Runtime(const std::string& backend) {
  layout_.hostname = host_name();
  layout_.launcher = detect_launcher();
  bool want_mpi = backend == "mpi" || (backend == "auto" && layout_.launcher != "none");
  if (backend != "auto" && backend != "mpi" && backend != "self") {
    throw ConfigError(fmt::format("dist.backend must be auto|mpi|self, got '{}'", backend));
  }

  if (want_mpi) {
    int initialized = 0;
    MR_CHECK_MPI(MPI_Initialized(&initialized));
    if (!initialized) {
      int provided = 0;
      MR_CHECK_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
      owns_mpi_ = true;
    }
    using_mpi_ = true;
    MR_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MR_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &layout_.rank));
    MR_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &layout_.world_size));

    // Local rank from the shared-memory split: the processes that share this node.
    MPI_Comm node = MPI_COMM_NULL;
    MR_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, layout_.rank, MPI_INFO_NULL, &node));
    MR_CHECK_MPI(MPI_Comm_rank(node, &layout_.local_rank));
    MR_CHECK_MPI(MPI_Comm_size(node, &layout_.local_size));
    MR_CHECK_MPI(MPI_Comm_free(&node));

    int slurm_tasks = env_int("SLURM_STEP_NUM_TASKS", 0);
    if (layout_.launcher == "srun" && slurm_tasks > 1 && layout_.world_size == 1) {
      throw Error(fmt::format(
          "srun started {} tasks but MPI sees a world of 1: start with `srun --mpi=pmix` (or pmi2) so the "
          "tasks find each other",
          slurm_tasks));
    }
    world_ = distributed_detail::make_mpi_communicator(MPI_COMM_WORLD);
  } else {
    // No launcher: the single-node fallback. The launchers' variables still
    // give the local rank if someone runs us under a foreign launcher.
    layout_.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("SLURM_LOCALID", 0));
    // ... and how many processes share the node (torch's threads per rank):
    // SLURM_STEP_TASKS_PER_NODE reads "2" or "2(x3)", the tasks on each node.
    layout_.local_size = std::max(1, env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("SLURM_STEP_TASKS_PER_NODE", 1)));
    world_ = make_self_communicator();
  }
  g_runtime = this;
}

Runtime::~Runtime() {
  {
    std::lock_guard<std::mutex> lock(watchdog_mutex_);
    stop_watchdog_ = true;
  }
  watchdog_wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  release_device_communicators();  // NCCL communicators bootstrapped over world_ go first
  world_.reset();  // frees the duplicated communicator before MPI_Finalize
  if (owns_mpi_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  if (g_runtime == this) g_runtime = nullptr;
}

Communicator& Runtime::world() { return *world_; }

bool Runtime::first_to_fail(double grace_seconds) {
  if (!using_mpi_ || layout_.world_size == 1) return true;
  // Point-to-point on MPI_COMM_WORLD, which carries nothing else once world_
  // (a duplicate) exists; the tag keeps the word apart all the same. Only a
  // lower rank ever sends to a higher one, so any word received is from below.
  constexpr int kFailedTag = 0x4641;  // "FA"
  static int failed_rank = 0;         // outlives this call: the sends may still be in flight at abort()
  failed_rank = layout_.rank;
  std::vector<MPI_Request> sent;
  for (int higher = layout_.rank + 1; higher < layout_.world_size; ++higher) {
    MPI_Request request = MPI_REQUEST_NULL;
    if (MPI_Isend(&failed_rank, 1, MPI_INT, higher, kFailedTag, MPI_COMM_WORLD, &request) == MPI_SUCCESS) {
      sent.push_back(request);
    }
  }
  bool lower_failed = false;
  if (layout_.rank > 0) {
    distributed_detail::poll_until(
        [&]() {
          int arrived = 0;
          if (MPI_Iprobe(MPI_ANY_SOURCE, kFailedTag, MPI_COMM_WORLD, &arrived, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            return distributed_detail::Poll::kFailed;
          }
          lower_failed = arrived != 0;
          return lower_failed ? distributed_detail::Poll::kDone : distributed_detail::Poll::kPending;
        },
        grace_seconds);
  }
  // A short wait for the words to leave, so a higher rank that failed too hears
  // it before this rank's abort() ends the job; a dead rank cannot hold it up.
  if (!sent.empty()) {
    distributed_detail::poll_until(
        [&]() {
          int done = 0;
          if (MPI_Testall(static_cast<int>(sent.size()), sent.data(), &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
            return distributed_detail::Poll::kFailed;
          }
          return done ? distributed_detail::Poll::kDone : distributed_detail::Poll::kPending;
        },
        0.5);
  }
  return !lower_failed;
}

void Runtime::abort(int status) const {
  std::fflush(stdout);
  std::fflush(stderr);
  if (using_mpi_ && layout_.world_size > 1) {
    MPI_Abort(MPI_COMM_WORLD, status);
  }
  std::_Exit(status);
}

std::string Runtime::mpi_library_version() const {
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int length = 0;
  MPI_Get_library_version(version, &length);  // callable before MPI_Init
  std::string text(version, static_cast<std::size_t>(length));
  auto newline = text.find('\n');
  if (newline != std::string::npos) text.resize(newline);
  while (!text.empty() && (text.back() == '\0' || text.back() == ' ')) text.pop_back();
  return text;
}

void Runtime::set_collective_timeout(double seconds) {
  collective_timeout_ = seconds;
  // The NCCL communicators made from now on bound their init and any call
  // NCCL leaves in progress by the same figure.
  set_device_collective_timeout(seconds);
  if (seconds > 0 && !watchdog_.joinable()) watchdog_ = std::thread([this] { watch_collectives(); });
}

void Runtime::watch_collectives() {
  auto progress_label = []() {
    std::lock_guard<std::mutex> lock(g_label_mutex);
    return g_label;
  };
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(watchdog_mutex_);
      if (watchdog_wake_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_watchdog_; })) return;
    }
    // NCCL collectives run on the GPU while the host goes on (or blocks in a
    // later device-to-host copy, outside any CollectiveScope): each device
    // communicator says whether its oldest unfinished collective is late.
    const double timeout = collective_timeout_.load();
    const std::string device_late = check_device_communicators(timeout);
    if (!device_late.empty()) {
      const std::string label = progress_label();
      std::fprintf(stderr, "[rank %d/%d] [error] %s at %s; ending this rank so the launcher ends the job\n",
                   layout_.rank, layout_.world_size, device_late.c_str(), label.c_str());
      std::fflush(stderr);
      std::_Exit(kExitFailure);
    }
    double start = g_operation_start.load();
    // 0 turns the bound off, also after the thread has started.
    if (timeout <= 0.0 || start <= 0.0 || steady_seconds() - start <= timeout) continue;
    const std::string label = progress_label();
    // stdio from this thread: the main thread is blocked inside MPI.
    std::fprintf(stderr,
                 "[rank %d/%d] [error] collective %s did not complete within %.0f s (dist.collective_timeout) at %s; "
                 "ending this rank so the launcher ends the job\n",
                 layout_.rank, layout_.world_size, g_operation.load() ? g_operation.load() : "?",
                 timeout, label.c_str());
    std::fflush(stderr);
    std::_Exit(kExitFailure);
  }
}

CollectiveScope::CollectiveScope(const char* operation) {
  g_operation.store(operation);
  g_operation_start.store(steady_seconds());
}

CollectiveScope::~CollectiveScope() { g_operation_start.store(0.0); }

void set_progress_label(const std::string& label) {
  std::lock_guard<std::mutex> lock(g_label_mutex);
  g_label = label;
}

Runtime* current_runtime() { return g_runtime; }

}  // namespace metareuse
