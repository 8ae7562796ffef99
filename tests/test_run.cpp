// run: the run folder's layout (the names every stage writes) and the run folder's
// lock (a second process refused naming host and pid; a killed holder's lock
// taken over).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "metareuse/core/config.h"
#include "metareuse/core/error.h"
#include "metareuse/run/layout.h"
#include "metareuse/run/lock.h"
#include "test_support.h"

namespace metareuse {

TEST_CASE("the run folder names its files in one place", "[run][unit]") {
  Config config;
  config.set("run.name", "demo");
  CHECK(RunLayout::for_config(config).folder() == "runs/demo");
  config.set("run.out_dir", "/tmp/out");
  const RunLayout layout = RunLayout::for_config(config);
  CHECK(layout.handbook() == "/tmp/out/handbook.json");
  CHECK(layout.augmented() == "/tmp/out/augmented.jsonl");
  CHECK(layout.dataset() == "/tmp/out/dataset.h5");
  CHECK(layout.metrics() == "/tmp/out/metrics.jsonl");
  CHECK(layout.eval_file() == "/tmp/out/eval/eval.json");
  CHECK(layout.answers() == "/tmp/out/eval/answers.jsonl");
  CHECK(layout.path(RunFile::kLatestCheckpoint) == "/tmp/out/checkpoints/latest");
  CHECK(layout.baseline().dataset() == layout.path(RunFile::kBaselineDataset));
  CHECK(layout.baseline().path(RunFile::kLatestCheckpoint) == layout.path(RunFile::kBaselineLatestCheckpoint));
  CHECK(layout.baseline_examples() == "/tmp/out/baseline/examples.jsonl");
  CHECK(layout.checkpoint_folder(config) == "/tmp/out/checkpoints");
  config.set("checkpoint.dir", "/scratch/ckpt");
  CHECK(layout.checkpoint_folder(config) == "/scratch/ckpt");
}

TEST_CASE("one run folder, one job: a second process is refused naming host and pid, a dead one's lock is taken over",
          "[run][unit]") {
  auto dir = test::temp_dir("run-lock");
  const std::string lock_file = RunLayout(dir.string()).lock();
  // A second process (forked) holds the lock, as a second `metareuse run` would.
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    {
      RunFolderLock held(lock_file);
      char one = 1;
      if (::write(ready[1], &one, 1) != 1) std::_Exit(2);
      ::pause();  // until killed
    }
    std::_Exit(0);
  }
  ::close(ready[1]);
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  ::close(ready[0]);
  std::string message;
  try {
    RunFolderLock second(lock_file);
  } catch (const Error& e) {
    message = e.what();
  }
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  CHECK_THAT(message, Catch::Matchers::Contains("in use") &&
                          Catch::Matchers::Contains(fmt::format("host {} pid {}", host, child)));
  // report --watch's probe sees the holder, and takes nothing from it.
  CHECK(run_folder_in_use(lock_file));
  CHECK(run_folder_in_use(lock_file));

  // Killed with SIGKILL: its flock is gone, the file still names it.
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  CHECK_FALSE(run_folder_in_use(lock_file));  // the file names it, but no one holds it
  {
    std::ifstream in(lock_file);
    CHECK_THAT(std::string(std::istreambuf_iterator<char>(in), {}),
               Catch::Matchers::Contains(fmt::format("pid {}", child)));
  }
  {
    RunFolderLock taken(lock_file);
    CHECK(taken.held());
    std::ifstream in(lock_file);
    CHECK_THAT(std::string(std::istreambuf_iterator<char>(in), {}),
               Catch::Matchers::Contains(fmt::format("pid {}", ::getpid())));
  }
  // Released cleanly: the file is emptied and the next job takes it silently.
  CHECK(std::filesystem::file_size(lock_file) == 0);
  CHECK_FALSE(run_folder_in_use(lock_file));
  CHECK_FALSE(run_folder_in_use((dir / "no-such.lock").string()));
  RunFolderLock again(lock_file);
  CHECK(again.held());
}

}  // namespace metareuse
