// The metareuse binary from the outside: help, unknown commands and flags,
// planned-but-unbuilt commands, config errors (and their exit status), an
// error said once under mpirun, results alone on stdout, torch's threads per
// rank, and info at 1 and 3 ranks.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <unistd.h>  // sysconf

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_runner.h"
#include "test_support.h"

using metareuse::test::run_metareuse;
using metareuse::test::run_metareuse_mpi;
using Catch::Matchers::Contains;

TEST_CASE("help lists every subcommand", "[cli]") {
  auto result = run_metareuse("--help");
  CHECK(result.status == 0);
  for (const char* name : {"patterns", "augment", "tokenize", "prepare", "train", "forward", "generate", "eval",
                           "export", "plan", "run", "info"}) {
    CHECK_THAT(result.output, Contains(name));
  }
  auto sub = run_metareuse("info --help");
  CHECK(sub.status == 0);
  CHECK_THAT(sub.output, Contains("--config") && Contains("--set") && Contains("--print-config"));
}

TEST_CASE("metareuse --version prints the version and exits 0", "[cli]") {
  auto result = run_metareuse("--version");
  INFO(result.output);
  CHECK(result.status == 0);
  CHECK_THAT(result.output, Catch::StartsWith("metareuse ") && Catch::Contains(METAREUSE_VERSION));
}

TEST_CASE("an unknown subcommand names the valid ones", "[cli]") {
  auto result = run_metareuse("trian");
  CHECK(result.status == 64);
  CHECK_THAT(result.output, Contains("unknown subcommand 'trian'") && Contains("did you mean 'train'") &&
                                Contains("valid subcommands"));
  auto none = run_metareuse("");
  CHECK(none.status == 64);
}

TEST_CASE("an unknown flag is an error that points at --help", "[cli]") {
  auto result = run_metareuse("info --bogus");
  CHECK(result.status == 64);
  CHECK_THAT(result.output, Contains("--bogus") && Contains("metareuse info --help"));
}

TEST_CASE("every listed subcommand is built", "[cli]") {
  // No subcommand is a placeholder: each one in --help answers its own --help.
  auto help = run_metareuse("--help");
  REQUIRE(help.status == 0);
  std::istringstream lines(help.output);
  std::string line;
  bool in_list = false;
  int checked = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("Subcommands:", 0) == 0) {
      in_list = true;
      continue;
    }
    if (!in_list || line.empty() || line[0] != ' ') continue;
    std::string name = line.substr(line.find_first_not_of(' '));
    name = name.substr(0, name.find(' '));
    auto result = run_metareuse(name + " --help");
    INFO(name << ": " << result.output);
    CHECK(result.status == 0);
    CHECK_THAT(result.output, !Contains("not built"));
    ++checked;
  }
  CHECK(checked >= 14);
}

// A bad --set key or value, or a bad flag value, is a bad command line (64,
// as the README's exit-status table says); a bad config file is an error in an
// input (1).
TEST_CASE("config errors stop the command before it starts", "[cli]") {
  auto typo = run_metareuse("info --set run.nmae=x");
  CHECK(typo.status == 64);
  CHECK_THAT(typo.output, Contains("run.nmae") && Contains("run.name"));
  auto range = run_metareuse("info --set run.seed=-5");
  CHECK(range.status == 64);
  CHECK_THAT(range.output, Contains("out of range"));
  auto choice = run_metareuse("info --set train.precision=fp8");
  CHECK(choice.status == 64);
  CHECK_THAT(choice.output, Contains("train.precision"));
  auto flag = run_metareuse("plan --ranks 0");
  INFO(flag.output);
  CHECK(flag.status == 64);
  auto missing = run_metareuse("info --config /nonexistent.json");
  CHECK(missing.status == 64);
  auto dir = metareuse::test::temp_dir("cli-config-errors");
  std::ofstream(dir / "bad.json") << R"({"run": {"nmae": "x"}})";
  auto in_file = run_metareuse("info --config " + (dir / "bad.json").string());
  CHECK(in_file.status == 1);
  CHECK_THAT(in_file.output, Contains("bad.json") && Contains("run.nmae"));
}

// Under mpirun an error is printed once, by the lowest rank that hit it.
TEST_CASE("under mpirun an error every rank hits is printed once, by rank 0", "[cli][mpi]") {
  auto corpus = run_metareuse_mpi(2, "patterns --corpus /nonexistent/corpus.jsonl --out /tmp/never.json");
  INFO(corpus.output);
  CHECK(corpus.status == 1);
  CHECK(metareuse::test::count_of(corpus.output, "corpus file not found") == 1);
  CHECK_THAT(corpus.output, Contains("[rank 0/2] [error]"));
  // A config error is found before the ranks start their work: the same rule.
  auto config = run_metareuse_mpi(2, "info --set run.nmae=x");
  INFO(config.output);
  CHECK(config.status == 64);
  CHECK(metareuse::test::count_of(config.output, "unknown config key 'run.nmae'") == 1);
  CHECK_THAT(config.output, Contains("[rank 0/2] [error]"));
}

TEST_CASE("under mpirun an error only rank 1 hits is printed once, by rank 1", "[cli][mpi]") {
  // Each rank reads the corpus from its own working folder; rank 1's has none.
  auto dir = metareuse::test::temp_dir("cli-error-rank1");
  std::filesystem::create_directories(dir / "rank0");
  std::filesystem::create_directories(dir / "rank1");
  std::filesystem::copy_file(std::string(METAREUSE_SOURCE_DIR) + "/datasets/sample_reasoning.jsonl",
                             dir / "rank0" / "corpus.jsonl");
  const std::string args = " patterns --corpus corpus.jsonl --out " + (dir / "handbook.json").string();
  auto result = metareuse::test::run_shell(
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpiexec --oversubscribe -n 1 -wdir '" +
      (dir / "rank0").string() + "' '" + METAREUSE_BINARY + "'" + args + " : -n 1 -wdir '" +
      (dir / "rank1").string() + "' '" + METAREUSE_BINARY + "'" + args);
  INFO(result.output);
  CHECK(result.status == 1);
  CHECK(metareuse::test::count_of(result.output, "corpus file not found") == 1);
  CHECK_THAT(result.output, Contains("[rank 1/2] [error]") && Contains((dir / "rank1").string()));
}

TEST_CASE("print-config shows resolved values with descriptions", "[cli]") {
  auto result = run_metareuse("info --set run.name=printed --print-config");
  CHECK(result.status == 0);
  CHECK_THAT(result.output, Contains("run.name = \"printed\"") && Contains("# Name of the run"));
}

TEST_CASE("info prints the build alone and the rank layout under mpiexec", "[cli][mpi]") {
  auto single = run_metareuse("info");
  CHECK(single.status == 0);
  CHECK_THAT(single.output, Contains("libtorch") && Contains("MPI") && Contains("ranks: 1"));
  auto three = run_metareuse_mpi(3, "info");
  INFO(three.output);
  CHECK(three.status == 0);
  CHECK_THAT(three.output, Contains("ranks: 3") && Contains("rank   0") && Contains("rank   1") &&
                               Contains("rank   2") && Contains("communicator: mpi"));
}

// A result a user pipes (`metareuse info | grep`, `tokenize --text ... | jq`) is
// stdout alone: every log line goes to stderr.
TEST_CASE("info, plan, print-config and tokenize print their result alone on stdout", "[cli]") {
  auto info = metareuse::test::run_metareuse_split("info --set log.level=debug");
  INFO(info.out << "\n--- stderr ---\n" << info.err);
  CHECK(info.status == 0);
  CHECK_THAT(info.out, Catch::StartsWith("metareuse ") && !Contains("[rank "));
  auto plan = metareuse::test::run_metareuse_split("plan --config configs/demo.json --ranks 1 --set log.level=debug");
  INFO(plan.out << "\n--- stderr ---\n" << plan.err);
  CHECK(plan.status == 0);
  CHECK_THAT(plan.out, Catch::StartsWith("model ") && !Contains("[rank "));
  auto printed = metareuse::test::run_metareuse_split("info --print-config --set log.level=debug");
  CHECK(printed.status == 0);
  CHECK_THAT(printed.out, Catch::StartsWith("[run]") && !Contains("[rank "));
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto ids = metareuse::test::run_metareuse_split("tokenize --set log.level=debug --tokenizer " + shared +
                                                  "/tokenizers/llama3/tokenizer.json --text hello");
  INFO(ids.out << "\n--- stderr ---\n" << ids.err);
  CHECK(ids.status == 0);
  CHECK(ids.out == "[15339]\n");
}

// torch's intra-op threads: the node's cores shared by its ranks (run.threads=0),
// OMP_NUM_THREADS when a launch script set it, or run.threads; the choice is
// logged and `info` shows it.
TEST_CASE("torch threads default to the cores shared by the ranks of a node, or run.threads", "[cli][mpi]") {
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const std::string in_source = std::string("cd '") + METAREUSE_SOURCE_DIR + "' && ";
  const std::string binary = std::string(" '") + METAREUSE_BINARY + "' ";
  auto alone = metareuse::test::run_shell_split(in_source + "env -u OMP_NUM_THREADS" + binary + "info");
  INFO(alone.out << "\n--- stderr ---\n" << alone.err);
  REQUIRE(alone.status == 0);
  CHECK_THAT(alone.out, Contains(fmt::format("torch threads {}\n", cores)));
  CHECK_THAT(alone.err, Contains(fmt::format("torch threads per rank: {} (run.threads=0: {} core(s) / 1 rank(s)",
                                             cores, cores)));
  auto three = metareuse::test::run_shell_split(in_source + "OMP_NUM_THREADS=2" + binary + "info --set run.threads=3");
  INFO(three.out << "\n--- stderr ---\n" << three.err);
  CHECK_THAT(three.out, Contains("torch threads 3\n"));
  CHECK_THAT(three.err, Contains("torch threads per rank: 3 (run.threads)"));
  auto omp = metareuse::test::run_shell_split(in_source + "OMP_NUM_THREADS=1" + binary + "info");
  CHECK_THAT(omp.out, Contains("torch threads 1\n"));
  CHECK_THAT(omp.err, Contains("torch threads per rank: 1 (OMP_NUM_THREADS, with run.threads=0)"));
  // Without MPI (no launcher, or dist.backend=self under one) the launcher's
  // variables give the ranks on the node.
  auto local = metareuse::test::run_shell_split(in_source + "env -u OMP_NUM_THREADS OMPI_COMM_WORLD_LOCAL_SIZE=2" +
                                                binary + "info");
  INFO(local.out << "\n--- stderr ---\n" << local.err);
  CHECK_THAT(local.out, Contains(fmt::format("torch threads {}\n", std::max(1L, cores / 2))));
  CHECK_THAT(local.err, Contains("/ 2 rank(s) on this node"));
  // Two ranks on this node, not bound to cores: half the cores each.
  auto two = metareuse::test::run_shell(in_source +
                                        "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 env -u OMP_NUM_THREADS "
                                        "mpiexec -n 2 --oversubscribe --bind-to none" + binary + "info");
  INFO(two.output);
  CHECK(two.status == 0);
  CHECK_THAT(two.output, Contains(fmt::format("torch threads {}\n", std::max(1L, cores / 2))) &&
                             Contains("/ 2 rank(s) on this node"));
}

using metareuse::test::read_file;

// config.resolved.json holds what the training used; a rerun that skips every
// stage leaves it alone, and `train --config` of it runs as is. A rerun with
// another lr re-runs the train stage, which refuses to resume the final
// checkpoint of another lr: no eval or export of the old model as if trained
// with the new one, and nothing in the run folder is rewritten.
TEST_CASE("run writes the resolved config its training used and refuses to resume it with another lr", "[cli][e2e]") {
  auto dir = metareuse::test::temp_dir("cli-run");
  const std::string run = "run --config configs/demo.json --set run.out_dir=" + dir.string() +
                          " --set train.max_steps=3 --set eval.limit=2 --set eval.max_new_tokens=8";
  auto first = run_metareuse(run);
  INFO(first.output);
  REQUIRE(first.status == 0);
  const auto resolved = dir / "config.resolved.json";
  const std::string written = read_file(resolved);
  CHECK_THAT(written, Contains(dir.string()) && Contains("\"vocab_size\": 600"));

  auto skipped = run_metareuse(run);
  INFO(skipped.output);
  CHECK(skipped.status == 0);
  CHECK_THAT(skipped.output, Contains("stage train      up to date, skipped") &&
                                 Contains("stage export     up to date, skipped"));
  CHECK(read_file(resolved) == written);
  auto train = run_metareuse("train --config " + resolved.string());
  INFO(train.output);
  CHECK(train.status == 0);

  const std::string stages = read_file(dir / "stages.json"), report = read_file(dir / "report.html");
  const std::string eval = read_file(dir / "eval" / "eval.json"), latest = read_file(dir / "checkpoints" / "latest");
  auto other_lr = run_metareuse(run + " --set train.lr=0.001");
  INFO(other_lr.output);
  CHECK(other_lr.status == 1);
  CHECK_THAT(other_lr.output, Contains("stage train      running") &&
                                  Contains("train.lr is 0.003 in the checkpoint but 0.001 in this run") &&
                                  Contains("--set run.name=") && !Contains("stage eval       running"));
  CHECK(read_file(resolved) == written);
  CHECK(read_file(dir / "stages.json") == stages);
  CHECK(read_file(dir / "report.html") == report);
  CHECK(read_file(dir / "eval" / "eval.json") == eval);
  CHECK(read_file(dir / "checkpoints" / "latest") == latest);
}

TEST_CASE("every bundled config in configs/ validates", "[cli]") {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(METAREUSE_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    auto result = run_metareuse("info --print-config --config " + entry.path().string());
    INFO(entry.path().string() << ": " << result.output);
    CHECK(result.status == 0);
    ++checked;
  }
  CHECK(checked >= 4);
}

// metareuse links no torch: torch commands run in metareuse-torch, which it
// execs from its own folder (src/cli/main.cpp).
TEST_CASE("the front binary runs torch-free commands itself and names a missing metareuse-torch", "[cli]") {
  auto maps = metareuse::test::run_shell(std::string("ldd '") + METAREUSE_BINARY + "'");
  CHECK(maps.status == 0);
  CHECK_THAT(maps.output, !Contains("libtorch") && !Contains("libc10"));
  auto dir = metareuse::test::temp_dir("cli-front");
  std::filesystem::copy_file(METAREUSE_BINARY, dir / "metareuse");
  auto alone = metareuse::test::run_shell("'" + (dir / "metareuse").string() + "' train");
  CHECK(alone.status == 1);
  CHECK_THAT(alone.output, Contains((dir / "metareuse-torch").string()) && Contains("could not be started"));
  auto help = metareuse::test::run_shell("'" + (dir / "metareuse").string() + "' --help");
  CHECK(help.status == 0);
  CHECK_THAT(help.output, Contains("train") && Contains("patterns"));
  // Through the exec, a torch command keeps its argv and its exit status.
  auto usage = run_metareuse("train --bogus");
  CHECK(usage.status == 64);
  CHECK_THAT(usage.output, Contains("metareuse train --help"));
}
