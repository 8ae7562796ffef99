// The process's place in the job: MPI init/finalize (RAII), rank, world size
// and local rank. Without a launcher the process is rank 0 of 1 and MPI is
// never initialised, so a plain `./metareuse ...` works on any machine.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <string>

namespace metareuse {

class Communicator;

struct RankLayout {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;   // rank among the processes on this node
  int local_size = 1;
  std::string hostname;
  std::string launcher;  // "none", "mpirun", "srun", "mpi" (forced)
};

class Runtime {
 public:
  // backend: "auto" (MPI when a launcher's environment is present), "mpi"
  // (always initialise MPI; a singleton when started alone) or "self".
  explicit Runtime(const std::string& backend = "auto");
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const RankLayout& layout() const { return layout_; }
  int rank() const { return layout_.rank; }
  int world_size() const { return layout_.world_size; }
  bool using_mpi() const { return using_mpi_; }

  // The communicator over every rank of the job.
  Communicator& world();

  // Ends the whole job: MPI_Abort under MPI (so no rank is left waiting in a
  // collective), std::_Exit otherwise.
  [[noreturn]] void abort(int status) const;

  // After an error on this rank, before abort(): whether this rank is the
  // lowest one that failed, so that the job prints the error once (every rank
  // that hits the same error would print it). Tells every higher rank that
  // this one failed, then waits up to `grace_seconds` for that word from a
  // lower rank. Not a collective: the ranks that did not fail take no part. A
  // rank that fails alone, or first by more than the grace, prints its own.
  bool first_to_fail(double grace_seconds);

  // "Open MPI v4.1.4, ..." or "not initialised (single process)".
  std::string mpi_library_version() const;

  // The collective watchdog: a collective that has not completed after
  // `seconds` makes this rank log the operation, its rank and the progress
  // label, and exit with kExitFailure, which makes mpirun end the whole job
  // instead of leaving it hanging. 0 turns it off. The same bound applies to
  // NCCL: the watchdog also checks each device communicator's oldest
  // unfinished collective (the host does not block in NCCL calls, so a hung
  // one shows as a stuck loss.item() or copy, outside any CollectiveScope),
  // and NCCL communicators made afterwards bound their init by it.
  void set_collective_timeout(double seconds);

 private:
  void watch_collectives();

  RankLayout layout_;
  bool using_mpi_ = false;
  bool owns_mpi_ = false;  // we called MPI_Init, so we call MPI_Finalize
  std::unique_ptr<Communicator> world_;
  std::atomic<double> collective_timeout_{0.0};  // written by the main thread, read by the watchdog
  // The destructor sets stop_watchdog_ under watchdog_mutex_ and wakes the thread,
  // so that ending a run does not wait out the watchdog's poll interval.
  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_wake_;
  bool stop_watchdog_ = false;
  std::thread watchdog_;
};

// Marks the start and end of one collective for the watchdog (used by the
// communicator backends). Not nested.
class CollectiveScope {
 public:
  explicit CollectiveScope(const char* operation);
  ~CollectiveScope();
  CollectiveScope(const CollectiveScope&) = delete;
  CollectiveScope& operator=(const CollectiveScope&) = delete;
};

// What the job is doing ("step 12"), for the watchdog's message.
void set_progress_label(const std::string& label);

// Which launcher's environment this process sees: "mpirun", "srun" or "none".
std::string detect_launcher();

// The process-wide runtime, for code that must end the job from anywhere
// (signal handlers, the CLI's error path). nullptr before one is created.
Runtime* current_runtime();

}  // namespace metareuse
