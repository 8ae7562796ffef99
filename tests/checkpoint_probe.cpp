// A checkpoint save on a slow filesystem, for test_watchdog: rank 0 sleeps in
// every write step (CheckpointOptions::test_write_delay_seconds) for longer
// than the collective timeout. The save must succeed and the watchdog must
// not end the job, because the other ranks wait for the writer outside any
// watched collective. Usage:
//   checkpoint_probe <collective timeout s> <write delay s> <shared folder>
// Prints one "rank r: saved ..." line per rank; rank 0 also checks that the
// file holds the model's parameters. Exit 0 only when all of that holds.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "toy_model.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: checkpoint_probe <collective timeout s> <write delay s> <folder>\n");
    return 2;
  }
  using namespace metareuse;
  Runtime runtime("auto");
  runtime.set_collective_timeout(std::atof(argv[1]));
  set_progress_label("the slow checkpoint probe");
  Communicator& world = runtime.world();
  ShardedModel model(test::toy_units(), world, torch::kCPU, torch::kFloat32);
  const auto params = test::toy_params();
  model.load_full(params);
  CheckpointOptions options;
  options.dir = argv[3];
  options.test_write_delay_seconds = std::atof(argv[2]);
  const SaveResult saved = save_checkpoint(model, {}, {{"step", 1}}, {}, options);
  std::printf("rank %d: saved ok=%d in %.1f s %s\n", world.rank(), saved.ok ? 1 : 0, saved.seconds,
              saved.ok ? saved.path.c_str() : saved.message.c_str());
  std::fflush(stdout);
  if (!saved.ok) return 1;
  if (world.rank() == 0) {
    const auto stored = read_checkpoint_params(saved.path);
    for (const auto& [name, tensor] : params) {
      if (stored.count(name) == 0 || !torch::equal(stored.at(name), tensor)) {
        std::printf("rank 0: %s differs in %s\n", name.c_str(), saved.path.c_str());
        return 1;
      }
    }
    std::printf("rank 0: all %zu parameters read back equal\n", params.size());
  }
  return 0;
}
