// The distill stage and behavior-conditioned SFT end to end, on a corpus a
// tiny model learns in a few dozen steps (every answer is 7): `metareuse run`
// with experiment.bc_sft trains the teacher, distills, trains the student and
// evaluates it without patterns; `metareuse distill` with that teacher gives
// the same examples at 1, 2 and 3 ranks, resumes after a stop (a part line
// left by a kill included), and refuses a teacher that got nothing right
// without leaving a training file behind.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>  // std::count
#include <filesystem>
#include <fstream>

#include "cli_runner.h"
#include "test_support.h"

using metareuse::test::read_file;
using metareuse::test::run_metareuse;
using metareuse::test::run_metareuse_mpi;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void write_corpus(const fs::path& path, const char* solution) {
  std::ofstream out(path);
  for (int i = 0; i < 40; ++i) {
    const int a = 1 + i % 6;
    json record = {{"question", "Tom has " + std::to_string(a) + " red and " + std::to_string(7 - a) +
                                    " blue apples. How many apples?"},
                   {"reasoning", "Add the red apples and the blue apples.\n" + std::to_string(a) + " + " +
                                     std::to_string(7 - a) + " = 7.\nSo Tom has 7 apples."},
                   {"solution", solution}};
    out << record.dump() << "\n";
  }
}

// The corpora and the run's config (the run folder is made by the first step).
const fs::path& bc_sft_run() {
  static const fs::path dir = [] {
    const fs::path d = metareuse::test::temp_dir("distill-cli");
    write_corpus(d / "sevens.jsonl", "7");
    write_corpus(d / "eights.jsonl", "8");
    json config = {{"run", {{"out_dir", (d / "run").string()}, {"seed", 1}}},
                   {"corpus", {{"files", {(d / "sevens.jsonl").string()}}}},
                   {"patterns", {{"mode", "normalized"}, {"top_k", 4}, {"min_support", 3}}},
                   {"augment", {{"mode", "global"}, {"top_k", 1}}},
                   {"tokenizer", {{"template", "plain"}, {"train_vocab_size", 320}}},
                   {"dataset", {{"sequence_length", 192}, {"pack", false}}},
                   {"model", {{"preset", "debug-tiny"}}},
                   {"train",
                    {{"global_batch", 8}, {"micro_batch", 8}, {"max_steps", 50}, {"lr", 0.01}, {"warmup_steps", 5},
                     {"time_limit", 0}}},
                   {"experiment", {{"bc_sft", true}}},
                   {"distill", {{"limit", 12}, {"max_new_tokens", 80}, {"batch_size", 2}}},
                   {"eval", {{"questions", (d / "sevens.jsonl").string()}, {"limit", 4}, {"max_new_tokens", 80}}}};
    std::ofstream(d / "config.json") << config.dump(2);
    return d;
  }();
  return dir;
}

std::string distill_args(const fs::path& out, const std::string& extra = "") {
  const fs::path& d = bc_sft_run();
  return "distill --config " + (d / "config.json").string() + " --teacher " + (d / "run" / "checkpoints").string() +
         " --handbook " + (d / "run" / "handbook.json").string() + " --out " + out.string() + " " + extra;
}

}  // namespace

// One case, in steps: ctest runs each case in its own process, and every step
// uses the teacher that the first one trains.
TEST_CASE("behavior-conditioned SFT: the run, distill at 1-3 ranks, resume, and a teacher with nothing right", "[mpi]") {
  const fs::path& d = bc_sft_run();
  auto run = run_metareuse("run --config " + (d / "config.json").string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  for (const char* stage : {"stage distill    running", "stage student-data running", "stage student-train running"}) {
    CHECK_THAT(run.output, Contains(stage));
  }
  const json summary = json::parse(read_file(d / "run" / "distill" / "distill.json"));
  CHECK(summary["questions"] == 12);
  CHECK(summary["generated"] == 12);
  CHECK(summary["kept"].get<int>() >= 1);
  CHECK(summary["kept"].get<int>() + summary["duplicates"].get<int>() + summary["dropped_for_length"].get<int>() ==
        summary["correct"].get<int>());
  // Each example: the bare question as prompt, the teacher's reasoning and answer as target, its provenance.
  std::ifstream examples(d / "run" / "distilled.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(examples, line)) {
    ++lines;
    const json example = json::parse(line);
    const std::string question = example["question"];
    CHECK(example["prompt"] == question + "\n");
    CHECK(example["patterns"].empty());
    CHECK_THAT(example["target"].get<std::string>(), Contains("#### 7"));
    CHECK(example["correct"] == true);
    CHECK(example["teacher"] == (d / "run" / "checkpoints").string());
    CHECK(example["shown"].is_array());
    CHECK_FALSE(example["shown"].empty());
  }
  CHECK(lines == summary["kept"].get<int>());
  // The teacher's prompts showed behaviors; the student's training prompts do not.
  std::ifstream answers(d / "run" / "distill" / "answers.jsonl");
  std::getline(answers, line);
  CHECK(json::parse(line).contains("teacher"));
  std::getline(answers, line);
  CHECK_THAT(json::parse(line)["prompt"].get<std::string>(), Contains("Add the red apples"));

  const json eval = json::parse(read_file(d / "run" / "eval" / "eval.json"));
  REQUIRE(eval["models"].contains("bc-sft"));
  CHECK(eval["models"]["bc-sft"]["prompt_patterns"] == false);
  CHECK(eval["models"]["reuse"]["prompt_patterns"] == true);
  CHECK(eval["models"]["bc-sft"]["path"].get<std::string>().find("student") != std::string::npos);
  CHECK(fs::exists(d / "run" / "student" / "checkpoints" / "latest"));

  auto again = run_metareuse("run --config " + (d / "config.json").string());
  INFO(again.output);
  REQUIRE(again.status == 0);
  CHECK_THAT(again.output, Contains("stage distill    up to date, skipped"));

  {  // the same examples at 1, 2 and 3 ranks
    const fs::path one = d / "ranks1" / "distilled.jsonl";
    auto first = run_metareuse(distill_args(one));
    INFO(first.output);
    REQUIRE(first.status == 0);
    const std::string expected = read_file(one);
    REQUIRE_FALSE(expected.empty());
    for (int ranks : {2, 3}) {
      INFO(ranks << " ranks");
      const fs::path out = d / ("ranks" + std::to_string(ranks)) / "distilled.jsonl";
      auto result = run_metareuse_mpi(ranks, distill_args(out));
      INFO(result.output);
      REQUIRE(result.status == 0);
      CHECK(read_file(out) == expected);
    }
  }

  {  // a stopped distill resumes from the answers it kept
    const fs::path whole = d / "whole" / "distilled.jsonl";
    REQUIRE(run_metareuse(distill_args(whole)).status == 0);

    // A time limit already passed: one round of 2 answers, then exit 3 with those answers kept.
    const fs::path out = d / "stopped" / "distilled.jsonl";
    auto stopped = run_metareuse(distill_args(out, "--set distill.time_limit=0.000001"));
    INFO(stopped.output);
    REQUIRE(stopped.status == 3);
    CHECK_FALSE(fs::exists(out));
    const fs::path answers = d / "stopped" / "distill" / "answers.jsonl";
    std::string kept = read_file(answers);
    CHECK(std::count(kept.begin(), kept.end(), '\n') == 3);  // the header and one round
    // A kill in the middle of a write leaves a part line; the next run cuts it.
    std::ofstream(answers, std::ios::app) << "{\"item\": 5, \"out";

    auto resumed = run_metareuse(distill_args(out));
    INFO(resumed.output);
    REQUIRE(resumed.status == 0);
    CHECK_THAT(resumed.output, Contains("2 answer(s) read back"));
    CHECK(read_file(out) == read_file(whole));
    const json summary = json::parse(read_file(d / "stopped" / "distill" / "distill.json"));
    CHECK(summary["resumed"] == 2);
    CHECK(summary["generated"] == 12);

    // Another teacher's answers are not reused: other options start over.
    auto other = run_metareuse(distill_args(out, "--set distill.max_new_tokens=79"));
    INFO(other.output);
    REQUIRE(other.status == 0);
    CHECK_THAT(other.output, Contains("starting over"));
    // An edited corpus is another set of questions: its answers start over too.
    REQUIRE(run_metareuse(distill_args(out)).status == 0);  // answers for this corpus and these options
    { std::ofstream(d / "sevens.jsonl", std::ios::app) << "\n"; }
    auto edited = run_metareuse(distill_args(out));
    INFO(edited.output);
    REQUIRE(edited.status == 0);
    CHECK_THAT(edited.output, Contains("starting over"));
  }

  {  // a teacher with no right answer: refused, and no training file
    const fs::path out = d / "wrong" / "distilled.jsonl";
    auto result = run_metareuse(distill_args(out, "--corpus " + (d / "eights.jsonl").string()));
    INFO(result.output);
    CHECK(result.status == 1);
    CHECK_THAT(result.output, Contains("answered 0 of 12 question(s) right"));
    CHECK_FALSE(fs::exists(out));
    CHECK_FALSE(fs::exists(d / "wrong" / "distill" / "distill.json"));
  }
}
