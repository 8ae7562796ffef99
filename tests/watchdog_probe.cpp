// A job in which the last rank stops answering (it sleeps instead of joining
// a barrier), for test_watchdog: the other ranks' collective watchdog must end
// the job instead of waiting forever. Usage: watchdog_probe <timeout seconds>.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"

int main(int argc, char** argv) {
  metareuse::Runtime runtime("auto");
  runtime.set_collective_timeout(argc > 1 ? std::atof(argv[1]) : 2.0);
  metareuse::set_progress_label("the probe's barrier");
  metareuse::Communicator& world = runtime.world();
  world.barrier();  // everyone arrives
  if (world.rank() == world.size() - 1) std::this_thread::sleep_for(std::chrono::seconds(120));
  world.barrier();  // the last rank never arrives in time
  std::printf("rank %d passed the barrier\n", world.rank());
  return 0;
}
