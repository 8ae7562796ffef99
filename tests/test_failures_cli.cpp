// Bad input from the outside: the bad inputs a new user hits, by class. An
// empty result is an error with its reason (1); every write is checked, under
// a file-size limit with SIGXFSZ ignored or not, and leaves no temporary and
// the previous output intact (2); an output that cannot be created says so (2);
// ranks started with different configs stop before they compute, naming the
// key and a rank on each side (7).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "cli_runner.h"
#include "sample_examples.h"  // write_sample_augmented
#include "test_support.h"

using metareuse::test::run_metareuse;
using metareuse::test::run_shell;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

using metareuse::test::read_file;

// A tokenizer and augmented examples from datasets/sample_reasoning.jsonl, made once.
const fs::path& fixture_dir() {
  static const fs::path dir = [] {
    fs::path d = metareuse::test::temp_dir("failures-cli");
    metareuse::test::write_sample_augmented(d / "augmented.jsonl");
    auto tokenizer = run_metareuse("tokenize --train datasets/sample_reasoning.jsonl --vocab-size 400 --tokenizer " +
                                   (d / "spm.model").string());
    INFO(tokenizer.output);
    REQUIRE(tokenizer.status == 0);
    return d;
  }();
  return dir;
}

std::string prepare_args(const fs::path& input, const fs::path& out, const std::string& extra = "") {
  return "prepare --input " + input.string() + " --out " + out.string() + " --tokenizer " +
         (fixture_dir() / "spm.model").string() + " --set tokenizer.template=plain " + extra;
}

// `metareuse <args>` under a file-size limit of `kilobytes`, with SIGXFSZ ignored by the shell or left alone.
metareuse::test::CommandResult run_limited(const std::string& args, int kilobytes, bool ignore_signal) {
  // dash counts ulimit -f in 512-byte blocks.
  return run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR + "' && (" + (ignore_signal ? "trap '' XFSZ; " : "") +
                   "ulimit -f " + std::to_string(kilobytes * 2) + "; exec '" + METAREUSE_BINARY + "' " + args + ")");
}

bool any_with_suffix(const fs::path& dir, const std::string& suffix) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

// ---- 1. An empty result is an error, with the reason.

TEST_CASE("prepare that would make 0 sequences fails with the document lengths and writes nothing", "[e2e][empty]") {
  fs::path dir = metareuse::test::temp_dir("empty-prepare");
  auto result = run_metareuse(prepare_args(fixture_dir() / "augmented.jsonl", dir / "dataset.h5",
                                           "--sequence-length 8 --set dataset.pack=false"));
  INFO(result.output);
  CHECK(result.status == 1);
  CHECK_THAT(result.output, Contains("0 sequences") && Contains("shortest") && Contains("longest") &&
                                Contains("sequence_length 8"));
  CHECK_FALSE(fs::exists(dir / "dataset.h5"));
  CHECK_FALSE(any_with_suffix(dir, ".partial"));

  // Records without the fields: every one bad, the reason given.
  std::ofstream(dir / "bad.jsonl") << "{\"question\": \"no prompt\"}\n{\"prompt\": 3, \"target\": \"x\"}\n";
  auto bad = run_metareuse(prepare_args(dir / "bad.jsonl", dir / "dataset.h5"));
  INFO(bad.output);
  CHECK(bad.status == 1);
  CHECK_THAT(bad.output, Contains("no usable records") && Contains("all 2 record(s) are bad"));
  std::ofstream(dir / "blank.jsonl") << "\n\n";
  auto blank = run_metareuse(prepare_args(dir / "blank.jsonl", dir / "dataset.h5"));
  CHECK(blank.status == 1);
  CHECK_THAT(blank.output, Contains("no records"));
  CHECK_FALSE(fs::exists(dir / "dataset.h5"));
}

TEST_CASE("patterns on an empty, all-bad or binary corpus fails naming the corpus and its bad lines", "[e2e][empty]") {
  fs::path dir = metareuse::test::temp_dir("empty-patterns");
  std::ofstream(dir / "empty.jsonl").close();
  std::ofstream(dir / "bad.jsonl") << "{\"question\": 1}\nnot json\n[1, 2]\n";
  {
    std::ofstream binary(dir / "binary.jsonl", std::ios::binary);
    for (int i = 0; i < 4096; ++i) binary.put(static_cast<char>((i * 131) % 256));
  }
  for (const char* name : {"empty.jsonl", "bad.jsonl", "binary.jsonl"}) {
    auto result = run_metareuse(std::string("patterns --corpus ") + (dir / name).string() + " --out " +
                                (dir / "handbook.json").string());
    INFO(name << ": " << result.output);
    CHECK(result.status == 1);
    CHECK_THAT(result.output, Contains((dir / name).string()) && Contains("no usable record"));
    CHECK_FALSE(fs::exists(dir / "handbook.json"));
  }
  auto bad = run_metareuse("patterns --corpus " + (dir / "bad.jsonl").string() + " --out " +
                           (dir / "handbook.json").string());
  CHECK_THAT(bad.output, Contains("3 bad lines") && Contains("malformed JSON"));
  // Good records, but no pattern frequent enough.
  auto rare = run_metareuse("patterns --corpus datasets/sample_reasoning.jsonl --min-support 100000 --out " +
                            (dir / "handbook.json").string());
  INFO(rare.output);
  CHECK(rare.status == 1);
  CHECK_THAT(rare.output, Contains("0 patterns") && Contains("min_support=100000") && Contains("400 records"));
  CHECK_FALSE(fs::exists(dir / "handbook.json"));
}

TEST_CASE("tokenize of records without the field fails and writes no file", "[e2e][empty]") {
  fs::path dir = metareuse::test::temp_dir("empty-tokenize");
  std::ofstream(dir / "in.jsonl") << "{\"question\": \"no text field\"}\n{\"text\": 5}\n";
  auto result = run_metareuse("tokenize --tokenizer " + (fixture_dir() / "spm.model").string() + " --input " +
                              (dir / "in.jsonl").string() + " --out " + (dir / "out.jsonl").string());
  INFO(result.output);
  CHECK(result.status == 1);
  CHECK_THAT(result.output, Contains("no record to tokenize") && Contains("2 bad"));
  CHECK_FALSE(fs::exists(dir / "out.jsonl"));
  CHECK_FALSE(fs::exists(dir / "out.jsonl.tmp"));
}

// ---- 2. Every write is checked.

TEST_CASE("under a file-size limit every stage reports the file, leaves no temporary and keeps the old output",
          "[e2e][writes]") {
  fs::path dir = metareuse::test::temp_dir("writes-limit");
  const fs::path augmented = fixture_dir() / "augmented.jsonl";
  struct Stage {
    const char* name;
    std::string args;
    fs::path out;
  };
  const std::vector<Stage> stages = {
      {"prepare", prepare_args(augmented, dir / "dataset.h5", "--sequence-length 256 --set dataset.pack=false"),
       dir / "dataset.h5"},
      {"tokenize", "tokenize --tokenizer " + (fixture_dir() / "spm.model").string() + " --input " +
                       (dir / "text.jsonl").string() + " --out " + (dir / "tokens.jsonl").string(),
       dir / "tokens.jsonl"},
      {"patterns", "patterns --corpus datasets/sample_reasoning.jsonl --min-support 2 --top-k 0 --out " +
                       (dir / "handbook.json").string(),
       dir / "handbook.json"},
  };
  {
    std::ofstream text(dir / "text.jsonl");
    for (int i = 0; i < 400; ++i) text << nlohmann::json{{"text", "record number " + std::to_string(i) + " of many"}}.dump() << "\n";
  }
  for (const Stage& stage : stages) {
    // Unlimited, the output is larger than the limit (so the limit does bite).
    auto full = run_metareuse(stage.args);
    INFO(stage.name << ": " << full.output);
    REQUIRE(full.status == 0);
    REQUIRE(fs::file_size(stage.out) > 8 * 1024);
    std::ofstream(stage.out, std::ios::trunc) << "previous output";
    for (bool ignore_signal : {true, false}) {
      auto limited = run_limited(stage.args, 8, ignore_signal);
      INFO(stage.name << (ignore_signal ? " (SIGXFSZ ignored)" : " (plain ulimit -f)") << ": " << limited.output);
      CHECK(limited.status == 1);  // not 153 (SIGXFSZ), not 0
      CHECK_THAT(limited.output, Contains("cannot write " + stage.out.string()) && Contains("File too large"));
      CHECK(read_file(stage.out) == "previous output");
      CHECK_FALSE(any_with_suffix(dir, ".tmp"));
      CHECK_FALSE(any_with_suffix(dir, ".partial"));
    }
  }
  // augment: its per-rank parts and the joined file.
  auto handbook = run_metareuse("patterns --corpus datasets/sample_reasoning.jsonl --out " +
                                (dir / "handbook.json").string());
  REQUIRE(handbook.status == 0);
  const std::string augment_args = "augment --corpus datasets/sample_reasoning.jsonl --handbook " +
                                   (dir / "handbook.json").string() + " --out " + (dir / "augmented.jsonl").string();
  auto full = run_metareuse(augment_args);
  INFO(full.output);
  REQUIRE(full.status == 0);
  REQUIRE(fs::file_size(dir / "augmented.jsonl") > 8 * 1024);
  std::ofstream(dir / "augmented.jsonl", std::ios::trunc) << "previous output";
  auto limited = run_limited(augment_args, 8, false);
  INFO(limited.output);
  CHECK(limited.status == 1);
  CHECK_THAT(limited.output, Contains("cannot write " + (dir / "augmented.jsonl").string()) && Contains("File too large"));
  CHECK(read_file(dir / "augmented.jsonl") == "previous output");
  CHECK_FALSE(any_with_suffix(dir, ".tmp"));
  CHECK_FALSE(any_with_suffix(dir, ".part-0"));
}

// A small tmpfs mounted for one test (as root; CI runs as root on these
// machines), unmounted at the end. `error` says why when it cannot be mounted.
struct SmallFileSystem {
  explicit SmallFileSystem(const fs::path& where, std::size_t bytes) : path(where) {
    fs::create_directories(path);
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      error = std::string("cannot mount a tmpfs at ") + path.string() + ": " + std::strerror(errno) +
              " (needs root or CAP_SYS_ADMIN)";
    }
  }
  ~SmallFileSystem() {
    if (error.empty()) ::umount2(path.c_str(), MNT_DETACH);
  }
  // Fills the file system with `filler` until `leave` bytes are free.
  void fill(std::size_t leave) const {
    struct statvfs info {};
    REQUIRE(::statvfs(path.c_str(), &info) == 0);
    const std::size_t available = static_cast<std::size_t>(info.f_bavail) * info.f_frsize;
    REQUIRE(available > leave);
    std::ofstream out(path / "filler", std::ios::binary | std::ios::app);
    out << std::string(available - leave, 'x');
  }
  void empty_filler() const { fs::remove(path / "filler"); }
  fs::path path;
  std::string error;
};

// A real ENOSPC, not a file-size limit: each writer meets a full file system.
TEST_CASE("a full disk (ENOSPC) fails every stage naming the file, keeps the old output and leaves no temporary",
          "[e2e][writes]") {
  fs::path dir = metareuse::test::temp_dir("enospc");
  SmallFileSystem disk(dir / "disk", 8 << 20);
  if (!disk.error.empty()) {
    METAREUSE_SKIP(disk.error);
    return;
  }
  const fs::path out = disk.path;
  std::ofstream text(dir / "text.jsonl");
  for (int i = 0; i < 400; ++i) text << nlohmann::json{{"text", "record number " + std::to_string(i) + " of many"}}.dump() << "\n";
  text.close();
  struct Stage {
    const char* name;
    std::string args;
    fs::path out;
  };
  const std::vector<Stage> stages = {
      {"prepare", prepare_args(fixture_dir() / "augmented.jsonl", out / "dataset.h5",
                               "--sequence-length 256 --set dataset.pack=false"),
       out / "dataset.h5"},
      {"tokenize", "tokenize --tokenizer " + (fixture_dir() / "spm.model").string() + " --input " +
                       (dir / "text.jsonl").string() + " --out " + (out / "tokens.jsonl").string(),
       out / "tokens.jsonl"},
      {"patterns", "patterns --corpus datasets/sample_reasoning.jsonl --min-support 2 --top-k 0 --out " +
                       (out / "handbook.json").string(),
       out / "handbook.json"},
  };
  auto no_temporaries = [&] {
    for (const char* suffix : {".tmp", ".partial", ".part-0", ".train.txt"}) {
      INFO("suffix " << suffix);
      CHECK_FALSE(any_with_suffix(out, suffix));
      CHECK_FALSE(any_with_suffix(out / "checkpoints", suffix));
    }
  };
  fs::create_directories(out / "checkpoints");
  for (const Stage& stage : stages) {
    std::ofstream(stage.out, std::ios::trunc) << "previous output";
    disk.fill(4096);
    auto full = run_metareuse(stage.args);
    INFO(stage.name << ": " << full.output);
    CHECK(full.status == 1);
    CHECK_THAT(full.output, Contains("cannot write " + stage.out.string()) && Contains("No space left on device"));
    CHECK(read_file(stage.out) == "previous output");
    no_temporaries();
    disk.empty_filler();
  }

  // Checkpoints: the one at step 2 is written; on a full disk the one at step 4
  // fails naming its file, `latest` still names step 2, and that one resumes.
  const fs::path dataset = dir / "dataset.h5";
  auto prepared = run_metareuse(prepare_args(fixture_dir() / "augmented.jsonl", dataset,
                                             "--sequence-length 192 --set dataset.pack=false"));
  REQUIRE(prepared.status == 0);
  auto train = [&](int steps, const std::string& extra) {
    return run_metareuse("train --dataset " + dataset.string() + " --set run.out_dir=" + (dir / "run").string() +
                         " --set checkpoint.dir=" + (out / "checkpoints").string() +
                         " --set model.vocab_size=400 --set train.global_batch=6 --set train.micro_batch=1 "
                         "--set train.time_limit=0 --set train.max_steps=" + std::to_string(steps) + " " + extra);
  };
  auto first = train(2, "");
  INFO(first.output);
  REQUIRE(first.status == 0);
  REQUIRE(read_file(out / "checkpoints" / "latest").rfind("ckpt-00000002.h5", 0) == 0);
  disk.fill(4096);
  auto second = train(4, "--resume auto");
  INFO(second.output);
  CHECK(second.status == 1);
  CHECK_THAT(second.output, Contains("cannot write " + (out / "checkpoints" / "ckpt-00000004.h5").string()) &&
                                Contains("No space left on device"));
  CHECK(read_file(out / "checkpoints" / "latest").rfind("ckpt-00000002.h5", 0) == 0);
  no_temporaries();
  disk.empty_filler();
  auto resumed = train(3, "--resume auto");
  INFO(resumed.output);
  CHECK(resumed.status == 0);
  CHECK_THAT(resumed.output, Contains("resumed from") && Contains("ckpt-00000002.h5"));
}

TEST_CASE("an output that is a directory or under a file is 'cannot create X: reason', not a raw error",
          "[e2e][writes]") {
  fs::path dir = metareuse::test::temp_dir("writes-create");
  fs::create_directories(dir / "folder");
  std::ofstream(dir / "plain") << "a file";
  for (const fs::path& out : {dir / "folder", dir / "plain" / "sub" / "out.h5"}) {
    auto prepare = run_metareuse(prepare_args(fixture_dir() / "augmented.jsonl", out, "--set dataset.pack=false"));
    INFO(prepare.output);
    CHECK(prepare.status == 1);
    CHECK_THAT(prepare.output, Contains("cannot create " + out.string()));
    CHECK_FALSE(Catch::contains(prepare.output, "filesystem error"));
    CHECK_FALSE(Catch::contains(prepare.output, "HDF5 call"));
    auto patterns = run_metareuse("patterns --corpus datasets/sample_reasoning.jsonl --out " + out.string());
    INFO(patterns.output);
    CHECK(patterns.status == 1);
    CHECK_THAT(patterns.output, Contains("cannot create " + out.string()));
    CHECK_FALSE(Catch::contains(patterns.output, "filesystem error"));
  }
}

// ---- 7. Ranks agree before they compute.

TEST_CASE("ranks started with different configs stop at once, naming the key and a rank on each side", "[e2e][mpi]") {
  fs::path dir = metareuse::test::temp_dir("agree");
  const std::string common = std::string("patterns --corpus datasets/sample_reasoning.jsonl --out ") +
                             (dir / "handbook.json").string() + " --set dist.collective_timeout=60";
  auto result = run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR +
                          "' && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpiexec "
                          "--oversubscribe -n 1 '" + METAREUSE_BINARY + "' " + common + " --top-k 5 : -n 1 '" +
                          METAREUSE_BINARY + "' " + common + " --top-k 6");
  INFO(result.output);
  CHECK(result.status != 0);
  CHECK(result.status != 124);  // no hang
  CHECK_THAT(result.output, Contains("patterns.top_k is 5 on rank 0 but 6 on rank 1"));
  CHECK_FALSE(fs::exists(dir / "handbook.json"));
  // The same config on both ranks runs.
  auto same = metareuse::test::run_metareuse_mpi(2, common + " --top-k 5");
  INFO(same.output);
  CHECK(same.status == 0);
}

// ---- 5. Sizes are bounds-checked before memory is touched.

TEST_CASE("plan's sizes are bounded with readable messages", "[e2e][bounds]") {
  const std::string plan = "plan --set model.preset=llama3.2-3b --set train.precision=fp16 --set train.micro_batch=1 ";
  auto huge_seq = run_metareuse(plan + "--ranks 8 --seq 100000000000");
  INFO(huge_seq.output);
  CHECK(huge_seq.status == 64);
  CHECK_THAT(huge_seq.output, Contains("--seq") && Contains("must be at most 16777216"));
  CHECK_FALSE(Catch::contains(huge_seq.output, "TiB"));
  auto long_seq = run_metareuse(plan + "--ranks 8 --seq 200000");
  INFO(long_seq.output);
  CHECK(long_seq.status == 1);
  CHECK_THAT(long_seq.output, Contains("sequence length 200000") && Contains("max_position_embeddings (131072)"));
  auto float_ranks = run_metareuse(plan + "--ranks 1e20 --seq 2048");
  INFO(float_ranks.output);
  CHECK(float_ranks.status == 64);
  CHECK_THAT(float_ranks.output, Contains("--ranks") && Contains("'1e20' is not a whole number"));
  auto zero_ranks = run_metareuse(plan + "--ranks 0 --seq 2048");
  CHECK(zero_ranks.status == 64);
  CHECK_THAT(zero_ranks.output, Contains("must be > 0"));
  CHECK_FALSE(Catch::contains(zero_ranks.output, "179769313486"));  // no 309-digit bound
}

// ---- 10. Messages name what the user typed.

TEST_CASE("messages name the flag the user typed", "[e2e][messages]") {
  fs::path dir = metareuse::test::temp_dir("messages");
  auto mode = run_metareuse("augment --mode fancy --corpus datasets/sample_reasoning.jsonl --out " +
                            (dir / "out.jsonl").string());
  INFO(mode.output);
  CHECK(mode.status == 64);  // a bad flag value is a bad command line
  CHECK_THAT(mode.output, Contains("--mode: config key 'augment.mode' must be one of") && Contains("fancy"));
  CHECK_FALSE(Catch::contains(mode.output, "--set"));
  auto length = run_metareuse(prepare_args(fixture_dir() / "augmented.jsonl", dir / "d.h5", "--sequence-length abc"));
  INFO(length.output);
  CHECK(length.status == 64);
  CHECK_THAT(length.output, Contains("--sequence-length: config key 'dataset.sequence_length' must be an integer"));
  auto typed_set = run_metareuse("augment --set augment.mode=fancy --out " + (dir / "out.jsonl").string());
  CHECK(typed_set.status == 64);
  CHECK_THAT(typed_set.output, Contains("--set: config key 'augment.mode'"));  // what was typed
  auto both = run_metareuse("run --from patterns --only augment");
  INFO(both.output);
  CHECK(both.status == 64);
  CHECK_THAT(both.output, Contains("--from") && Contains("--only") && Contains("excludes"));
  auto folder = run_metareuse("tokenize --tokenizer " + dir.string() + " --text hello");
  INFO(folder.output);
  CHECK(folder.status == 1);
  CHECK_THAT(folder.output, Contains("is a directory"));
  CHECK_FALSE(Catch::contains(folder.output, "is empty"));
  std::ofstream(dir / "file.txt") << "x";
  auto report = run_metareuse("report --run " + (dir / "file.txt").string());
  INFO(report.output);
  CHECK(report.status == 64);
  CHECK_THAT(report.output, Contains("is a file"));
  // A folder with none of a run's files: an error, and no empty report.html left behind.
  fs::create_directories(dir / "not-a-run");
  auto empty = run_metareuse("report --run " + (dir / "not-a-run").string());
  INFO(empty.output);
  CHECK(empty.status == 1);
  CHECK_THAT(empty.output, Contains("nothing to report") && Contains("not-a-run"));
  CHECK_FALSE(fs::exists(dir / "not-a-run" / "report.html"));
}

// ---- 9. Stages hand over without hand-editing.

TEST_CASE("plan works before the weights are downloaded: the folder's config.json, else a named preset",
          "[e2e][handover]") {
  fs::path dir = metareuse::test::temp_dir("plan-before-download");
  const std::string missing = (dir / "Llama-3.2-3B").string();
  auto unnamed = run_metareuse("plan --set model.path=" + missing + " --ranks 8 --seq 2048");
  INFO(unnamed.output);
  CHECK(unnamed.status == 1);
  CHECK_THAT(unnamed.output, Contains(missing) && Contains("no config.json yet") && Contains("model.preset"));
  auto named = run_metareuse("plan --set model.path=" + missing + " --set model.preset=llama3.2-3b "
                             "--set train.precision=fp16 --set train.micro_batch=1 --ranks 8 --seq 2048 "
                             "--device-memory 16GiB");
  INFO(named.output);
  CHECK(named.status == 0);
  CHECK_THAT(named.output, Contains("3212749824 parameters"));
  // The shipped 3B config plans from a fresh checkout (models/ not downloaded).
  if (!fs::exists(fs::path(METAREUSE_SOURCE_DIR) / "models" / "Llama-3.2-3B" / "config.json")) {
    auto shipped = run_metareuse("plan --config configs/llama3.2-3b-p100x8.json --ranks 8");
    INFO(shipped.output);
    CHECK(shipped.status == 0);
    CHECK_THAT(shipped.output, Contains("3212749824 parameters") && Contains("verdict: fits"));
  }
}

// ---- Not-found messages say where they looked (relative paths are read from
// the current folder, README part 5: the message gives the absolute path).

TEST_CASE("every input that is not found is named with the path looked for", "[e2e][not-found]") {
  fs::path dir = metareuse::test::temp_dir("not-found");
  const std::string source = METAREUSE_SOURCE_DIR;
  const std::string missing = "no/such/";  // relative: run_metareuse runs from the source folder
  fs::create_directories(dir / "empty-folder");
  const std::string empty_folder = (dir / "empty-folder").string();
  struct Case {
    const char* input;
    std::string args;
    std::string named;  // the path the message must name
  };
  const std::vector<Case> cases = {
      {"config", "patterns --config " + missing + "config.json", source + "/no/such/config.json"},
      {"corpus", "patterns --corpus " + missing + "corpus.jsonl --out " + (dir / "h.json").string(),
       source + "/no/such/corpus.jsonl"},
      {"tokenizer", "tokenize --tokenizer " + missing + "spm.model --text hello", source + "/no/such/spm.model"},
      {"handbook", "augment --corpus datasets/sample_reasoning.jsonl --handbook " + missing + "handbook.json --out " +
                       (dir / "a.jsonl").string(),
       source + "/no/such/handbook.json"},
      {"augmented examples", prepare_args(missing + "augmented.jsonl", dir / "d.h5"), source + "/no/such/augmented.jsonl"},
      {"model folder", "generate --model " + missing + "model --prompt-ids 1,2", source + "/no/such/model"},
      {"model config.json", "generate --model " + empty_folder + " --prompt-ids 1,2", empty_folder + "/config.json"},
      {"dataset", "train --dataset " + missing + "dataset.h5 --set run.out_dir=" + (dir / "run").string(),
       source + "/no/such/dataset.h5"},
      {"checkpoint", "export --checkpoint " + missing + "ckpt-1.h5 --out " + (dir / "export").string(),
       source + "/no/such/ckpt-1.h5"},
      {"checkpoint folder's latest", "export --checkpoint " + empty_folder + " --out " + (dir / "export").string(),
       empty_folder + "/latest"},
      {"report's run folder", "report --run " + missing + "run", source + "/no/such/run"},
      {"report --watch's run folder", "report --watch --run " + missing + "run", source + "/no/such/run"},
      {"generate's prompts file", "generate --model " + missing + "model --prompts " + missing + "prompts.txt",
       source + "/no/such/prompts.txt"},
  };
  for (const Case& c : cases) {
    auto result = run_metareuse(c.args);
    INFO(c.input << ": " << result.output);
    CHECK((result.status == 1 || result.status == 64));
    CHECK_THAT(result.output, Contains(c.named));
    CHECK_FALSE(Catch::contains(result.output, "filesystem error"));
  }
  // A model folder without weights: the message names both files it looked for.
  const fs::path no_weights = dir / "no-weights";
  fs::create_directories(no_weights);
  std::ofstream(no_weights / "config.json") << R"({"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
    "num_hidden_layers": 1, "num_attention_heads": 2})";
  auto weights = run_metareuse("generate --model " + no_weights.string() + " --prompt-ids 1,2");
  INFO(weights.output);
  CHECK(weights.status == 1);
  CHECK_THAT(weights.output, Contains("looked for: " + (no_weights / "model.safetensors.index.json").string() + ", " +
                                      (no_weights / "model.safetensors").string()));
}
