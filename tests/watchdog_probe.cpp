// A job in which the last rank stops answering (it sleeps instead of joining
// a barrier, or with "started" a started all-gather that the others wait
// for), for test_watchdog: the other ranks' collective watchdog must end the
// job instead of waiting forever.
// Usage: watchdog_probe <timeout seconds> [barrier|started].
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"

int main(int argc, char** argv) {
  metareuse::Runtime runtime("auto");
  runtime.set_collective_timeout(argc > 1 ? std::atof(argv[1]) : 2.0);
  metareuse::set_progress_label("the probe's barrier");
  metareuse::Communicator& world = runtime.world();
  const bool started = argc > 2 && std::strcmp(argv[2], "started") == 0;
  world.barrier();  // everyone arrives
  if (world.rank() == world.size() - 1) std::this_thread::sleep_for(std::chrono::seconds(120));
  if (started) {
    // Started, then waited for after a while (the overlap's pattern): the
    // watchdog's clock runs from the wait.
    std::vector<float> block(1000, 1.0f), gathered(1000 * static_cast<std::size_t>(world.size()));
    metareuse::PendingCollective pending =
        world.start_allgather(block.data(), gathered.data(), block.size(), metareuse::DType::kFloat32);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pending.wait();  // the last rank never starts it in time
  } else {
    world.barrier();  // the last rank never arrives in time
  }
  std::printf("rank %d passed the barrier\n", world.rank());
  return 0;
}
