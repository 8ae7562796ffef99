// The reuse-world experiment end to end, shrunk for CI: `metareuse world`
// writes a small world, then `metareuse run` with configs/reuse-world.json
// trains the reuse model and the baseline a few steps each and evaluates
// them. Checks that eval.json has the three entries with their fields, that
// the reuse entry is prompted with patterns and the control and baseline are
// not, and that a second run finds every stage up to date. It does not check
// the size of the effect (a few steps teach nothing).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli_runner.h"
#include "test_support.h"

using metareuse::test::run_metareuse;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using json = nlohmann::json;

TEST_CASE("the reuse-world experiment writes baseline, reuse and control entries") {
  const fs::path dir = metareuse::test::temp_dir("world-cli");
  auto world = run_metareuse("world --out " + (dir / "world").string() + " --train 300 --test 10");
  INFO(world.output);
  REQUIRE(world.status == 0);

  const std::string run_args =
      "run --config configs/reuse-world.json --set run.out_dir=" + (dir / "run").string() +
      " --set 'corpus.files=[\"" + (dir / "world" / "train.jsonl").string() + "\"]'" +
      " --set eval.questions=" + (dir / "world" / "test.jsonl").string() +
      " --set train.max_steps=4 --set train.global_batch=4 --set train.micro_batch=4 --set eval.max_new_tokens=12";
  auto run = run_metareuse(run_args);
  INFO(run.output);
  REQUIRE(run.status == 0);
  CHECK_THAT(run.output, Contains("stage baseline-train running"));

  std::ifstream eval_file(dir / "run" / "eval" / "eval.json");
  REQUIRE(eval_file);
  json eval = json::parse(eval_file);
  CHECK(eval["questions"] == 10);
  REQUIRE(eval["models"].size() == 3);
  const json& models = eval["models"];
  for (const char* role : {"baseline", "reuse", "control"}) {
    INFO(role);
    REQUIRE(models.contains(role));
    const json& summary = models[role]["summary"];
    for (const char* key : {"accuracy", "mean_generated_tokens", "median_generated_tokens", "mean_reasoning_tokens",
                            "median_reasoning_tokens", "mean_reasoning_steps", "pattern_use_rate"}) {
      INFO(key);
      CHECK(summary.contains(key));
      CHECK(summary[key].is_number());
    }
    CHECK(summary["questions"] == 10);
  }
  CHECK(models["reuse"]["prompt_patterns"] == true);
  CHECK(models["control"]["prompt_patterns"] == false);
  CHECK(models["baseline"]["prompt_patterns"] == false);
  CHECK(models["baseline"]["path"].get<std::string>().find("baseline") != std::string::npos);
  CHECK(models["reuse"]["path"] == models["control"]["path"]);
  for (const char* role : {"reuse", "control"}) {
    INFO(role);
    REQUIRE(models[role].contains("change_vs_baseline"));
    for (const char* key : {"accuracy_points", "mean_reasoning_tokens", "mean_reasoning_steps", "pattern_use_rate"}) {
      CHECK(models[role]["change_vs_baseline"].contains(key));
    }
  }
  CHECK_FALSE(models["baseline"].contains("change_vs_baseline"));
  CHECK(eval["relative_change_of"] == "reuse");

  // Per question: the reuse prompt carries the retrieved patterns, the control's and baseline's do not.
  std::map<std::string, std::map<std::int64_t, std::int64_t>> prompt_tokens;
  std::ifstream answers(dir / "run" / "eval" / "answers.jsonl");
  std::string line;
  while (std::getline(answers, line)) {
    json answer = json::parse(line);
    prompt_tokens[answer["model"]][answer["index"]] = answer["prompt_tokens"];
    const std::string prompt = answer["prompt"];
    if (answer["model"] == "reuse") {
      CHECK(prompt.rfind("Consider these behaviors: ", 0) == 0);
    } else {
      CHECK(prompt == answer["question"].get<std::string>() + "\n");
    }
  }
  REQUIRE(prompt_tokens["reuse"].size() == 10);
  for (const auto& [index, tokens] : prompt_tokens["reuse"]) {
    CHECK(tokens > prompt_tokens["control"][index]);
    CHECK(prompt_tokens["baseline"][index] == prompt_tokens["control"][index]);
  }
  // The baseline trained on examples without patterns, the reuse model on examples with the patterns they use.
  std::ifstream baseline_examples(dir / "run" / "baseline" / "examples.jsonl");
  REQUIRE(std::getline(baseline_examples, line));
  CHECK(json::parse(line)["patterns"].empty());
  CHECK(fs::exists(dir / "run" / "report.html"));

  // Fingerprints: nothing changed, nothing runs again.
  auto again = run_metareuse(run_args);
  INFO(again.output);
  REQUIRE(again.status == 0);
  CHECK_THAT(again.output, Contains("stage baseline-train up to date, skipped"));
  CHECK_THAT(again.output, Contains("stage eval       up to date, skipped"));

  // An eval stopped between rounds (status 3) goes on at the next run, with the same answers.
  const std::string answers_before = metareuse::test::read_file(dir / "run" / "eval" / "answers.jsonl");
  auto stopped = run_metareuse(run_args + " --from eval --set eval.time_limit=0.000001");
  INFO(stopped.output);
  REQUIRE(stopped.status == 3);
  CHECK_THAT(stopped.output, Contains("stage eval stopped with status 3"));
  CHECK(fs::exists(dir / "run" / "eval" / "answers.partial.jsonl"));
  auto resumed = run_metareuse(run_args);
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK_THAT(resumed.output, Contains("8 answer(s) read back"));  // one round: eval.batch_size 8 at 1 rank
  CHECK_FALSE(fs::exists(dir / "run" / "eval" / "answers.partial.jsonl"));
  std::map<std::pair<std::string, std::int64_t>, std::string> before, after;
  for (auto [text, outputs] : {std::pair{answers_before, &before},
                               std::pair{metareuse::test::read_file(dir / "run" / "eval" / "answers.jsonl"), &after}}) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      const json record = json::parse(line);
      (*outputs)[{record["model"].get<std::string>(), record["index"].get<std::int64_t>()}] = record["output"];
    }
  }
  CHECK(before.size() == 30);
  CHECK(after == before);
  fs::remove_all(dir);
}
