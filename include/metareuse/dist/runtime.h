// The process's place in the job: MPI init/finalize (RAII), rank, world size
// and local rank. Without a launcher the process is rank 0 of 1 and MPI is
// never initialised, so a plain `./metareuse ...` works on any machine.
#pragma once

#include <memory>
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

  // "Open MPI v4.1.4, ..." or "not initialised (single process)".
  std::string mpi_library_version() const;

 private:
  RankLayout layout_;
  bool using_mpi_ = false;
  bool owns_mpi_ = false;  // we called MPI_Init, so we call MPI_Finalize
  std::unique_ptr<Communicator> world_;
};

// Which launcher's environment this process sees: "mpirun", "srun" or "none".
std::string detect_launcher();

// The process-wide runtime, for code that must end the job from anywhere
// (signal handlers, the CLI's error path). nullptr before one is created.
Runtime* current_runtime();

}  // namespace metareuse
