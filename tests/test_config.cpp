// core: the config (defaults, files, overrides, and every way a key can be
// wrong), the checked, atomic file writer, and timings.json (stage times in
// the order they finished, across runs).
#include <catch2/catch.hpp>

#include <sys/resource.h>  // a file-size limit for the checked-write tests

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include "metareuse/core/config.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/stage_timings.h"
#include "metareuse/core/timing.h"
#include "test_support.h"

using metareuse::Config;
using metareuse::ConfigError;
using Catch::Matchers::Contains;

namespace {
std::string write_file(const std::string& name, const std::string& text) {
  auto path = metareuse::test::temp_dir("config") / name;
  std::ofstream(path) << text;
  return path.string();
}
}  // namespace

TEST_CASE("every key has a default that passes its own validation and a description", "[config]") {
  for (const auto& key : metareuse::config_schema()) {
    INFO(key.path);
    CHECK_FALSE(key.description.empty());
    CHECK_NOTHROW(metareuse::validate_config_value(key, key.default_value, "schema"));
    CHECK(key.path.find('.') != std::string::npos);
  }
  Config config;
  CHECK(config.get_string("run.name") == "demo");
  CHECK(config.get_int("run.seed") == 1234);
}

TEST_CASE("a config file overrides defaults and --set overrides the file", "[config]") {
  auto file = write_file("ok.json", R"({"run": {"name": "alpha", "seed": 7}, "log": {"level": "warn"}})");
  Config config = Config::load(file, {"run.seed=9", "run.name=beta"});
  CHECK(config.get_string("run.name") == "beta");
  CHECK(config.get_int("run.seed") == 9);
  CHECK(config.get_string("log.level") == "warn");
  CHECK(config.get_bool("log.all_ranks") == false);  // untouched default
}

TEST_CASE("unknown keys are errors naming the key and the closest valid one", "[config]") {
  auto file = write_file("typo.json", R"({"run": {"nmae": "x"}})");
  CHECK_THROWS_WITH(Config::from_file(file), Contains("run.nmae") && Contains("did you mean 'run.name'"));
  CHECK_THROWS_WITH(Config::from_file(file), Contains(file));

  Config config;
  CHECK_THROWS_WITH(config.apply_override("run.sed=3"), Contains("'run.sed'") && Contains("'run.seed'"));
  CHECK_THROWS_WITH(config.apply_override("nosection=3"), Contains("unknown config key 'nosection'"));
  auto section_typo = write_file("section.json", R"({"lgo": {"level": "info"}})");
  CHECK_THROWS_WITH(Config::from_file(section_typo), Contains("'lgo'"));
}

// transformers' TrainingArguments names are answered with the key that means
// the same, not the nearest spelling ('learning_rate' -> 'tokenizer.template').
TEST_CASE("TrainingArguments names get the metareuse key that means the same", "[config]") {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"learning_rate", "train.lr"},
      {"num_train_epochs", "train.epochs"},
      {"per_device_train_batch_size", "train.micro_batch"},
      {"gradient_accumulation_steps", "train.global_batch"},
      {"warmup_steps", "train.warmup_steps"},
      {"max_steps", "train.max_steps"},
      {"weight_decay", "train.weight_decay"},
      {"bf16", "train.precision"},
      {"fp16", "train.precision"},
      {"lr_scheduler_type", "train.lr_schedule"},
      {"max_grad_norm", "train.grad_clip"},
      {"seed", "run.seed"},
      {"save_steps", "checkpoint.every_steps"},
      {"logging_steps", "train.log_every"},
      {"output_dir", "run.out_dir"},
  };
  for (const auto& [name, key] : expected) {
    INFO(name);
    REQUIRE(metareuse::find_config_key(key) != nullptr);
    auto file = write_file(name + ".json", "{\"" + name + "\": 1}");
    CHECK_THROWS_WITH(Config::from_file(file), Contains("'" + name + "'") && Contains("is '" + key + "'") &&
                                                   !Contains("did you mean"));
    Config config;
    CHECK_THROWS_WITH(config.apply_override(name + "=1"), Contains("is '" + key + "'"));
  }
  // Inside a section too.
  auto nested = write_file("nested.json", R"({"train": {"learning_rate": 0.001}})");
  CHECK_THROWS_WITH(Config::from_file(nested), Contains("'train.learning_rate'") && Contains("is 'train.lr'"));
  // An ordinary typo still gets the nearest spelling.
  Config config;
  CHECK_THROWS_WITH(config.apply_override("train.lrr=1"), Contains("did you mean 'train.lr'"));
}

TEST_CASE("bad types are errors naming the key, the expected and the actual type", "[config]") {
  Config config;
  CHECK_THROWS_AS(config.apply_override("run.seed=abc"), ConfigError);
  CHECK_THROWS_WITH(config.apply_override("run.seed=abc"), Contains("run.seed") && Contains("integer"));
  CHECK_THROWS_WITH(config.apply_override("run.seed=1.5"), Contains("integer"));
  CHECK_THROWS_WITH(config.apply_override("log.all_ranks=maybe"), Contains("boolean"));
  CHECK_THROWS_WITH(config.apply_override("corpus.files=3"), Contains("list of strings"));
  auto file = write_file("types.json", R"({"run": {"name": 5}})");
  CHECK_THROWS_WITH(Config::from_file(file), Contains("run.name") && Contains("string"));
  // Unquoted strings are accepted for string keys.
  config.apply_override("run.name=123");
  CHECK(config.get_string("run.name") == "123");
}

TEST_CASE("values out of range or outside the choices are errors", "[config]") {
  Config config;
  CHECK_THROWS_WITH(config.apply_override("run.seed=-1"), Contains("out of range"));
  CHECK_THROWS_WITH(config.apply_override("log.level=loud"), Contains("debug|info|warn|error|off"));
  CHECK_THROWS_WITH(config.apply_override("dist.backend=gloo"), Contains("auto|mpi|self"));
  CHECK_THROWS_WITH(config.apply_override("run.seed"), Contains("section.key=value"));
}

TEST_CASE("malformed and missing config files are errors naming the file", "[config]") {
  auto bad = write_file("bad.json", "{ not json");
  CHECK_THROWS_WITH(Config::from_file(bad), Contains(bad) && Contains("invalid JSON"));
  auto array = write_file("array.json", "[1, 2]");
  CHECK_THROWS_WITH(Config::from_file(array), Contains("JSON object"));
  CHECK_THROWS_WITH(Config::from_file("/nonexistent/x.json"), Contains("/nonexistent/x.json"));
}

TEST_CASE("a section or key given twice in a config file is an error naming it", "[config]") {
  // JSON parsers keep the last of two equal keys: the first "train" would be dropped without a word.
  auto sections = write_file("twice.json", R"({"train": {"lr": 0.001}, "run": {"seed": 3}, "train": {"epochs": 2}})");
  CHECK_THROWS_WITH(Config::from_file(sections), Contains(sections) && Contains("'train' is given twice"));
  auto keys = write_file("key-twice.json", R"({"train": {"lr": 0.001, "epochs": 2, "lr": 0.01}})");
  CHECK_THROWS_WITH(Config::from_file(keys), Contains("'train.lr' is given twice"));
  // The same key in two sections is no repeat.
  auto fine = write_file("fine.json", R"({"patterns": {"mode": "exact"}, "augment": {"mode": "none"}})");
  CHECK(Config::from_file(fine).get_string("augment.mode") == "none");
}

TEST_CASE("the resolved config round-trips through write and from_file", "[config]") {
  Config config = Config::load("", {"run.name=roundtrip", "corpus.files=[\"a.jsonl\",\"b/*.jsonl\"]"});
  auto path = (metareuse::test::temp_dir("config-rt") / "sub" / "resolved.json").string();
  config.write(path);
  Config back = Config::from_file(path);
  CHECK(back.tree() == config.tree());
  CHECK(back.get_string_list("corpus.files") == std::vector<std::string>{"a.jsonl", "b/*.jsonl"});
  CHECK_THAT(config.describe(), Contains("run.name = \"roundtrip\"") && Contains("# Name of the run"));
}

TEST_CASE("sizes parse with binary and decimal units", "[config]") {
  CHECK(metareuse::parse_bytes("16GiB") == 16LL << 30);
  CHECK(metareuse::parse_bytes("512MB") == 512000000LL);
  CHECK(metareuse::parse_bytes("1024B") == 1024);
  CHECK(metareuse::parse_bytes("0") == 0);  // "none given" needs no unit
  // A bare number would be bytes: plan --device-memory 16 passed every check at 16 bytes.
  CHECK_THROWS_WITH(metareuse::parse_bytes("16"), Contains("'16' has no unit") && Contains("16GiB"));
  CHECK_THROWS_WITH(metareuse::parse_bytes("12 parsecs"), Contains("parsecs"));
  CHECK_THROWS_AS(metareuse::parse_bytes("GiB"), ConfigError);
}

// core/file_io.h: the checked, atomic writer every stage uses.
TEST_CASE("AtomicFile replaces a file only when complete, and a failed write keeps the old one", "[file_io]") {
  auto dir = metareuse::test::temp_dir("file-io");
  const std::string path = (dir / "out.txt").string();
  metareuse::write_file_atomic(path, "previous\n");
  auto read = [&]() { return metareuse::test::read_file(path); };
  {
    // An exception before commit(): the temporary goes, the old content stays.
    metareuse::AtomicFile file(path);
    file.write("half of the new content");
    CHECK(std::filesystem::exists(path + ".tmp"));
  }
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  CHECK(read() == "previous\n");

  // A file-size limit (SIGXFSZ ignored, as the CLI does): EFBIG, named.
  rlimit saved{};
  getrlimit(RLIMIT_FSIZE, &saved);
  metareuse::ignore_file_size_signal();
  rlimit limit = saved;
  limit.rlim_cur = 4096;
  setrlimit(RLIMIT_FSIZE, &limit);
  std::string message;
  try {
    metareuse::write_file_atomic(path, std::string(3 << 20, 'x'));
  } catch (const metareuse::Error& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, SIG_DFL);
  CHECK_THAT(message, Contains("cannot write " + path + ".tmp") && Contains("File too large"));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  CHECK(read() == "previous\n");

  metareuse::write_file_atomic(path, "new\n");
  CHECK(read() == "new\n");
}

TEST_CASE("an output that is a directory, or under a file, is 'cannot create X: reason'", "[file_io]") {
  auto dir = metareuse::test::temp_dir("file-io-create");
  CHECK_THROWS_WITH(metareuse::write_file_atomic(dir.string(), "x"),
                    Contains("cannot create " + dir.string()) && Contains("is a directory"));
  std::ofstream(dir / "plain") << "a file";
  const std::string under_file = (dir / "plain" / "sub" / "out.txt").string();
  CHECK_THROWS_WITH(metareuse::write_file_atomic(under_file, "x"), Contains("cannot create " + under_file));
  // Appending (metrics.jsonl) goes through the same checks.
  CHECK_THROWS_WITH(metareuse::AppendFile(dir.string(), false), Contains("cannot create " + dir.string()));
  metareuse::AppendFile append((dir / "log.jsonl").string(), true);
  append.write("a\n");
  append.write("b\n");
  std::ifstream in(dir / "log.jsonl");
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "a\nb\n");
}

namespace metareuse {

TEST_CASE("timings.json keeps each stage's last time and the order stages finished in", "[stage_timings]") {
  auto dir = test::temp_dir("run-timings");
  const std::string path = (dir / "timings.json").string();
  CHECK_FALSE(read_timings(path).found);
  Timings timings;
  timings.record("patterns", 1.5, "2025-01-01T00:00:00Z");
  timings.record("augment", 2.0, "2025-01-01T00:00:02Z");
  write_timings(timings, path);
  TimingsFile read = read_timings(path);
  REQUIRE(read.found);
  CHECK(read.timings.stages.at("patterns").sequence == 1);
  CHECK(read.timings.stages.at("augment").seconds == 2.0);
  // Run again: the stage's entry is replaced and comes after every other one.
  read.timings.record("patterns", 3.0, "2025-01-02T00:00:00Z");
  CHECK(read.timings.stages.at("patterns").sequence == 3);
  CHECK(read.timings.stages.at("patterns").finished == "2025-01-02T00:00:00Z");
  std::ofstream(dir / "bad.json") << R"({"stages": [1, 2]})";
  CHECK_FALSE(read_timings((dir / "bad.json").string()).found);
}

}  // namespace metareuse
