// metareuse eval / report from the outside, on a tiny model trained a few
// steps on the bundled sample corpus (as test_train_cli.cpp does): eval.json's
// fields, a checkpoint and its Hugging Face export giving the same answers,
// the same answers at 1 and 2 ranks (greedy and seeded sampling), GSM8K
// records, errors naming the file, and report.html.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli_runner.h"
#include "sample_examples.h"  // write_sample_augmented
#include "test_support.h"

using metareuse::test::run_metareuse;
using metareuse::test::run_metareuse_mpi;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Tokenizer, dataset, 3 training steps, a handbook and an export, made once.
const fs::path& trained_run() {
  static const fs::path dir = [] {
    fs::path d = metareuse::test::temp_dir("eval-cli");
    metareuse::test::write_sample_augmented(d / "augmented.jsonl", "\n");
    auto step = [](const std::string& args) {
      auto result = run_metareuse(args);
      INFO(args << "\n" << result.output);
      REQUIRE(result.status == 0);
    };
    step("tokenize --train datasets/sample_reasoning.jsonl --vocab-size 400 --tokenizer " + (d / "spm.model").string());
    step("prepare --input " + (d / "augmented.jsonl").string() + " --out " + (d / "dataset.h5").string() +
         " --tokenizer " + (d / "spm.model").string() +
         " --sequence-length 192 --set dataset.pack=false --set tokenizer.template=plain");
    step("train --dataset " + (d / "dataset.h5").string() + " --set run.out_dir=" + (d / "run").string() +
         " --set model.vocab_size=400 --set train.lr=3e-3 --set train.global_batch=6 --set train.micro_batch=1 "
         "--set train.max_steps=3 --set train.log_every=100 --set tokenizer.template=plain "
         "--set augment.mode=retrieval --set augment.top_k=3");
    step("patterns --set run.out_dir=" + (d / "run").string());
    step("export --checkpoint " + (d / "run" / "checkpoints").string() + " --out " + (d / "hf").string() +
         " --dtype fp32");
    return d;
  }();
  return dir;
}

std::string eval_args(const std::string& out, const std::string& extra) {
  const fs::path& d = trained_run();
  return "eval --model " + (d / "run" / "checkpoints").string() + " --questions datasets/sample_reasoning.jsonl" +
         " --tokenizer " + (d / "spm.model").string() + " --set run.out_dir=" + (d / "run").string() +
         " --set tokenizer.template=plain --limit 6 --max-new-tokens 24 --out " + out + " " + extra;
}

std::vector<json> read_lines(const fs::path& path) {
  std::vector<json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(json::parse(line));
  return lines;
}

std::map<std::pair<std::string, int64_t>, std::string> outputs_of(const fs::path& answers) {
  std::map<std::pair<std::string, int64_t>, std::string> outputs;
  for (const json& record : read_lines(answers)) {
    outputs[{record.at("model").get<std::string>(), record.at("index").get<int64_t>()}] = record.at("output");
  }
  return outputs;
}

// A file without the figures that time the run (they differ between any two runs).
json without_timing(json value) {
  if (value.is_object()) {
    for (const char* key : {"seconds", "wall_seconds", "tokens_per_s"}) value.erase(key);
    for (auto& [key, item] : value.items()) item = without_timing(item);
  } else if (value.is_array()) {
    for (json& item : value) item = without_timing(item);
  }
  return value;
}

std::vector<json> answers_without_timing(const fs::path& path) {
  std::vector<json> lines;
  for (const json& line : read_lines(path)) lines.push_back(without_timing(line));
  return lines;
}

}  // namespace

TEST_CASE("eval writes eval.json and answers.jsonl, and a checkpoint and its export answer alike", "[eval][e2e]") {
  const fs::path& d = trained_run();
  fs::path out = d / "eval-1";
  auto result = run_metareuse(eval_args(out.string(), "--baseline " + (d / "hf").string()));
  INFO(result.output);
  REQUIRE(result.status == 0);
  CHECK_THAT(result.output, Contains("accuracy") && Contains("change vs baseline"));

  std::ifstream in(out / "eval.json");
  json eval = json::parse(in);
  CHECK(eval.at("format") == "metareuse.eval");
  CHECK(eval.at("questions") == 6);
  CHECK(eval.at("generation").at("greedy") == true);
  CHECK(eval.at("generation").at("max_new_tokens") == 24);
  CHECK(eval.at("prompt").at("patterns") == true);  // the run folder's handbook.json was found
  CHECK(eval.at("handbook_patterns").get<int>() > 0);
  for (const char* role : {"model", "baseline"}) {
    const json& summary = eval.at("models").at(role).at("summary");
    for (const char* key : {"accuracy", "correct", "answered_rate", "mean_generated_tokens",
                            "median_generated_tokens", "mean_reasoning_steps", "pattern_use_rate", "stopped_rate"}) {
      INFO(role << "." << key);
      CHECK(summary.contains(key));
    }
    CHECK(summary.at("questions") == 6);
    CHECK(summary.at("accuracy").get<double>() >= 0.0);
    CHECK(summary.at("accuracy").get<double>() <= 1.0);
    CHECK(summary.at("mean_generated_tokens").get<double>() > 0.0);
    CHECK(summary.at("mean_generated_tokens").get<double>() <= 24.0);
  }
  CHECK_THAT(eval.at("models").at("model").at("source").get<std::string>(), Contains("checkpoint"));
  // The export holds the checkpoint's fp32 weights: the same greedy answers.
  auto outputs = outputs_of(out / "answers.jsonl");
  REQUIRE(outputs.size() == 12);
  for (int64_t i = 0; i < 6; ++i) CHECK(outputs[{"model", i}] == outputs[{"baseline", i}]);
  const json& change = eval.at("relative_change");
  CHECK(change.at("accuracy_points") == 0.0);
  CHECK(change.at("mean_generated_tokens") == 0.0);

  // Per-question records carry what the summary is computed from.
  for (const json& record : read_lines(out / "answers.jsonl")) {
    for (const char* key : {"question", "reference", "answer", "correct", "generated_tokens", "reasoning_steps",
                            "patterns_used", "stopped", "output"}) {
      CHECK(record.contains(key));
    }
  }

  SECTION("report.html from the run folder") {
    // eval's default output is <run>/eval; put one there, then render.
    fs::create_directories(d / "run" / "eval");
    fs::copy(out / "eval.json", d / "run" / "eval" / "eval.json", fs::copy_options::overwrite_existing);
    fs::copy(out / "answers.jsonl", d / "run" / "eval" / "answers.jsonl", fs::copy_options::overwrite_existing);
    auto report = run_metareuse("report --run " + (d / "run").string());
    INFO(report.output);
    REQUIRE(report.status == 0);
    std::ifstream page(d / "run" / "report.html");
    std::string html((std::istreambuf_iterator<char>(page)), std::istreambuf_iterator<char>());
    CHECK_THAT(html, Contains("<svg") && Contains("Loss scale") && Contains("Top patterns") &&
                         Contains("Reasoning steps per answer") && Contains("train.max_steps"));
    CHECK_FALSE(Catch::Contains("No training metrics").match(html));
  }
}

// The table is eval's result: stdout holds it and nothing else (logs go to stderr).
TEST_CASE("eval prints only its table on stdout", "[eval][e2e]") {
  const fs::path& d = trained_run();
  auto result = metareuse::test::run_metareuse_split(eval_args((d / "eval-stdout").string(), ""));
  INFO(result.out << "\n--- stderr ---\n" << result.err);
  REQUIRE(result.status == 0);
  CHECK_THAT(result.out, Catch::StartsWith("model ") && Contains("accuracy") && !Contains("[rank "));
}

TEST_CASE("eval --model <checkpoint> takes the tokenizer and template the checkpoint was trained with",
          "[eval][e2e]") {
  const fs::path& d = trained_run();
  // No --tokenizer, no tokenizer.template: both come from the checkpoint (its dataset was
  // prepared with template plain; the default template, chat, needs Llama 3's special
  // tokens, which this sentencepiece tokenizer lacks, so it would fail).
  const fs::path out = d / "eval-trained";
  auto result = run_metareuse("eval --model " + (d / "run" / "checkpoints").string() +
                              " --questions datasets/sample_reasoning.jsonl --set run.out_dir=" +
                              (d / "run").string() + " --limit 2 --max-new-tokens 8 --out " + out.string());
  INFO(result.output);
  REQUIRE(result.status == 0);
  std::ifstream in(out / "eval.json");
  const json eval = json::parse(in);
  CHECK(eval.at("models").at("model").at("template") == "plain");
  CHECK(eval.at("models").at("model").at("tokenizer") == (d / "spm.model").string());
  // A template the user sets still wins, with a warning naming the trained one.
  result = run_metareuse("eval --model " + (d / "run" / "checkpoints").string() +
                         " --questions datasets/sample_reasoning.jsonl --set run.out_dir=" + (d / "run").string() +
                         " --set tokenizer.template=chat --limit 2 --max-new-tokens 8 --out " + out.string());
  CHECK(result.status != 0);
  CHECK_THAT(result.output, Contains("tokenizer.template=chat as set, but") && Contains("trained with template plain"));
}

// Without a config the run folder would be the default one (runs/demo), another run's.
TEST_CASE("eval --model <checkpoint> alone evaluates the checkpoint's run: its folder, handbook and prompts",
          "[eval][e2e]") {
  const fs::path& d = trained_run();
  const fs::path run = d / "run";
  fs::remove_all(run / "eval");
  auto result = run_metareuse("eval --model " + (run / "checkpoints").string() +
                              " --questions datasets/sample_reasoning.jsonl --limit 2 --max-new-tokens 8");
  INFO(result.output);
  REQUIRE(result.status == 0);
  REQUIRE(fs::exists(run / "eval" / "eval.json"));
  CHECK(fs::exists(run / "eval" / "answers.jsonl"));
  std::ifstream in(run / "eval" / "eval.json");
  const json eval = json::parse(in);
  // trained_run's checkpoint was trained with augment.mode retrieval, top_k 3; the defaults are global, 8.
  CHECK(eval.at("prompt").at("patterns") == true);
  CHECK(eval.at("prompt").at("augment_mode") == "retrieval");
  CHECK(eval.at("prompt").at("top_k") == 3);
  CHECK(eval.at("handbook") == (run / "handbook.json").string());

  // A checkpoint outside any run folder has no home for its results: --out is required.
  fs::create_directories(d / "loose");
  fs::copy_file(run / "checkpoints" / "ckpt-00000003.h5", d / "loose" / "model.h5",
                fs::copy_options::overwrite_existing);
  const std::string loose = "eval --model " + (d / "loose" / "model.h5").string() +
                            " --questions datasets/sample_reasoning.jsonl --limit 1 --max-new-tokens 4";
  auto homeless = run_metareuse(loose);
  INFO(homeless.output);
  CHECK(homeless.status == 64);
  CHECK_THAT(homeless.output, Contains("in no run folder") && Contains("--out"));
  auto with_out = run_metareuse(loose + " --out " + (d / "loose-eval").string());
  INFO(with_out.output);
  CHECK(with_out.status == 0);
  CHECK(fs::exists(d / "loose-eval" / "eval.json"));
}

TEST_CASE("eval gives the same answers at 1 and 2 ranks, greedy and sampled", "[eval][e2e]") {
  const fs::path& d = trained_run();
  for (const std::string sampling : {"", "--temperature 0.9 --top-p 0.9 --seed 7"}) {
    INFO("sampling: " << sampling);
    auto one = run_metareuse(eval_args((d / "ranks-1").string(), sampling));
    INFO(one.output);
    REQUIRE(one.status == 0);
    auto two = run_metareuse_mpi(2, eval_args((d / "ranks-2").string(), sampling));
    INFO(two.output);
    REQUIRE(two.status == 0);
    auto a = outputs_of(d / "ranks-1" / "answers.jsonl"), b = outputs_of(d / "ranks-2" / "answers.jsonl");
    REQUIRE(a.size() == 6);
    CHECK(a == b);
  }
}

TEST_CASE("eval reads GSM8K records and names bad inputs", "[eval][e2e]") {
  const fs::path& d = trained_run();
  fs::path questions = d / "gsm8k.jsonl";
  {
    std::ofstream out(questions);
    out << R"({"question": "Tom has 3 apples and buys 2 more. How many apples?", "answer": "3 + 2 = 5\n#### 5"})"
        << "\n"
        << R"({"question": "no answer field"})" << "\n"
        << R"({"question": "A pen costs $1,200. Two pens?", "answer": "2 * 1200 = 2400\n#### 2,400"})" << "\n";
  }
  auto result = run_metareuse("eval --model " + (d / "hf").string() + " --questions " + questions.string() +
                              " --tokenizer " + (d / "spm.model").string() +
                              " --set tokenizer.template=plain --max-new-tokens 8 --out " + (d / "gsm8k").string());
  INFO(result.output);
  REQUIRE(result.status == 0);
  CHECK_THAT(result.output, Contains("gsm8k.jsonl:2"));  // the bad line is named
  std::ifstream in(d / "gsm8k" / "eval.json");
  json eval = json::parse(in);
  CHECK(eval.at("questions") == 2);
  CHECK(eval.at("bad_records") == 1);
  CHECK_FALSE(eval.contains("relative_change"));  // no baseline
  auto records = read_lines(d / "gsm8k" / "answers.jsonl");
  REQUIRE(records.size() == 2);
  CHECK(records[1].at("reference") == "2,400");

  auto missing = run_metareuse("eval --model " + (d / "nothing").string() + " --questions " + questions.string() +
                               " --tokenizer " + (d / "spm.model").string());
  CHECK(missing.status != 0);
  CHECK_THAT(missing.output, Contains("nothing"));
  auto no_questions = run_metareuse("eval --model " + (d / "hf").string() + " --questions " +
                                    (d / "absent.jsonl").string() + " --tokenizer " + (d / "spm.model").string());
  CHECK(no_questions.status == 1);
  CHECK_THAT(no_questions.output, Contains("absent.jsonl"));
}

TEST_CASE("a stopped eval resumes from the answers it kept", "[eval][e2e]") {
  const fs::path& d = trained_run();
  // Two entries of 6 questions, in rounds of 2 answers per rank.
  const std::string entries = "--baseline " + (d / "hf").string() + " --set eval.batch_size=2";
  const std::string stop_soon = " --set eval.time_limit=0.000001";  // passed after the first round
  const fs::path whole = d / "resume-whole";
  auto uninterrupted = run_metareuse(eval_args(whole.string(), entries));
  INFO(uninterrupted.output);
  REQUIRE(uninterrupted.status == 0);
  CHECK_FALSE(fs::exists(whole / "answers.partial.jsonl"));
  const json expected_eval = without_timing(json::parse(metareuse::test::read_file(whole / "eval.json")));
  const std::vector<json> expected_answers = answers_without_timing(whole / "answers.jsonl");
  REQUIRE(expected_answers.size() == 12);

  const fs::path out = d / "resume-stopped";
  const fs::path partial = out / "answers.partial.jsonl";
  auto lines_in = [](const fs::path& path) {
    const std::string text = metareuse::test::read_file(path);
    return std::count(text.begin(), text.end(), '\n');
  };
  auto stopped = run_metareuse(eval_args(out.string(), entries + stop_soon));
  INFO(stopped.output);
  REQUIRE(stopped.status == 3);
  CHECK_FALSE(fs::exists(out / "eval.json"));
  CHECK_FALSE(fs::exists(out / "answers.jsonl"));
  CHECK(lines_in(partial) == 3);  // the header and one round

  // Answers from other options are not reused: the log starts over.
  auto other = run_metareuse(eval_args(out.string(), entries + stop_soon + " --set eval.max_new_tokens=20"));
  INFO(other.output);
  REQUIRE(other.status == 3);
  CHECK_THAT(other.output, Contains("starting over"));
  CHECK(lines_in(partial) == 3);
  REQUIRE(run_metareuse(eval_args(out.string(), entries + stop_soon)).status == 3);  // and back again
  CHECK(lines_in(partial) == 3);

  // A kill in the middle of a write leaves a part line; the next run cuts it.
  std::ofstream(partial, std::ios::app) << "{\"entry\": 0, \"res";
  // Stopped again and again (2 ranks: rounds of 4), it goes on through both entries.
  auto next = run_metareuse_mpi(2, eval_args(out.string(), entries + stop_soon));
  INFO(next.output);
  REQUIRE(next.status == 3);
  CHECK_THAT(next.output, Contains("2 answer(s) read back"));
  CHECK(lines_in(partial) == 7);
  int runs = 0;
  for (; runs < 8; ++runs) {
    auto again = run_metareuse(eval_args(out.string(), entries + stop_soon));
    INFO(again.output);
    REQUIRE((again.status == 0 || again.status == 3));
    if (again.status == 0) break;
  }
  CHECK(runs == 2);  // 6 answers left, 2 per run: the third run finishes
  CHECK(without_timing(json::parse(metareuse::test::read_file(out / "eval.json"))) == expected_eval);
  CHECK(answers_without_timing(out / "answers.jsonl") == expected_answers);
  CHECK_FALSE(fs::exists(partial));
}
