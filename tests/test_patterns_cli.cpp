// `metareuse patterns` and `metareuse augment` from the outside, alone and
// under mpiexec -n 2, 3, 4: the same handbook at every rank count (exact mode
// equal to ../shared/reference/seed_patterns.py), --strict, missing files,
// --holdout, --import, and the two stages inside `metareuse run`; on GSM8K
// train, instructions that are full sentences (text.h's is_full_sentence) in
// byte-identical handbooks at 1 and 3 ranks; --model phrasing each pattern
// with the tiny fixture model (../shared/fixtures/hf_tiny_llama32).
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "metareuse/patterns/text.h"  // is_full_sentence
#include "patterns_fixtures.h"

namespace metareuse {
namespace {

using Catch::Matchers::Contains;
using nlohmann::json;
using test::run_metareuse;
using test::run_metareuse_mpi;

test::CommandResult run_at(int ranks, const std::string& args) {
  return ranks == 1 ? run_metareuse(args) : run_metareuse_mpi(ranks, args);
}

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

using metareuse::test::read_file;

}  // namespace

TEST_CASE("patterns --mode exact equals the Python reference at 1 to 4 ranks", "[e2e][mpi]") {
  auto dir = test::temp_dir("patterns-cli-exact");
  const std::string corpus = (dir / "tricky.jsonl").string();
  test::write_file(corpus, test::tricky_corpus());
  json reference = test::run_reference(corpus, 1, 1000);
  if (reference.empty()) {
    METAREUSE_SKIP("python3 or ../shared/reference/seed_patterns.py not available");
    return;
  }
  for (int ranks = 1; ranks <= 4; ++ranks) {
    auto out = dir / ("exact" + std::to_string(ranks) + ".json");
    auto result = run_at(ranks, "patterns --mode exact --min-support 1 --top-k 1000 --corpus " + corpus +
                                    " --out " + out.string());
    INFO("ranks " << ranks << "\n" << result.output);
    REQUIRE(result.status == 0);
    json handbook = read_json(out);
    CHECK(handbook["records"] == reference["records"]);
    REQUIRE(handbook["patterns"].size() == reference["patterns"].size());
    for (std::size_t i = 0; i < reference["patterns"].size(); ++i) {
      CHECK(handbook["patterns"][i]["text"] == reference["patterns"][i]["text"]);
      CHECK(handbook["patterns"][i]["support"] == reference["patterns"][i]["support"]);
    }
    CHECK(handbook["format"] == "metareuse.handbook");
    CHECK(handbook["version"] == 2);  // 2: name and instruction
  }
}

TEST_CASE("patterns in normalized mode writes the same handbook at 1 to 4 ranks", "[e2e][mpi]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = test::temp_dir("patterns-cli-normalized");
  const std::string train = shared + "/datasets/gsm8k/train.jsonl";
  json first;
  for (int ranks = 1; ranks <= 4; ++ranks) {
    auto out = dir / ("normalized" + std::to_string(ranks) + ".json");
    auto result = run_at(ranks, "patterns --corpus " + train + " --out " + out.string());
    INFO("ranks " << ranks << "\n" << result.output);
    REQUIRE(result.status == 0);
    CHECK_THAT(result.output, Contains("7473 records") && Contains("distinct candidates") && Contains("32 kept"));
    json handbook = read_json(out);
    handbook["stats"].erase("ranks");
    if (ranks == 1) {
      first = handbook;
      REQUIRE(first["patterns"].size() == 32);
      CHECK(first["patterns"][0].contains("kind"));
      CHECK(first["patterns"][0]["name"].get<std::string>().rfind("behavior_", 0) == 0);
      CHECK(!first["patterns"][0]["instruction"].get<std::string>().empty());
      CHECK(first["patterns"][0]["examples"].size() == 3);
    } else {
      CHECK(handbook == first);
    }
  }
}

TEST_CASE("patterns on GSM8K train: byte-identical handbooks at 1 and 3 ranks, >= 80% of the top 32 full sentences",
          "[e2e][mpi]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = test::temp_dir("patterns-cli-instructions");
  const std::string train = shared + "/datasets/gsm8k/train.jsonl";
  std::string bytes[2];
  for (int ranks : {1, 3}) {
    const auto out = dir / ("handbook" + std::to_string(ranks) + ".json");
    const auto start = std::chrono::steady_clock::now();
    auto result = run_at(ranks, "patterns --top-k 32 --corpus " + train + " --out " + out.string());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    INFO("ranks " << ranks << "\n" << result.output);
    REQUIRE(result.status == 0);
    WARN("GSM8K train, top 32, " << ranks << " rank(s): " << seconds << " s wall");
    bytes[ranks == 1 ? 0 : 1] = read_file(out);
  }
  // The file names its rank count in one place, stats.ranks; every other byte is the same.
  const std::string ranks_line = "\"ranks\": 3";
  const auto at = bytes[1].find(ranks_line);
  REQUIRE(at != std::string::npos);
  bytes[1].replace(at, ranks_line.size(), "\"ranks\": 1");
  CHECK(bytes[0] == bytes[1]);

  const json handbook = json::parse(bytes[0]);
  REQUIRE(handbook["patterns"].size() == 32);
  std::size_t full = 0;
  for (const json& pattern : handbook["patterns"]) {
    const std::string instruction = pattern["instruction"].get<std::string>();
    if (is_full_sentence(instruction)) {
      ++full;
    } else {
      WARN("not a full sentence: " << instruction << " (pattern: " << pattern["text"].get<std::string>() << ")");
    }
  }
  WARN("GSM8K train, top 32: " << full << "/32 instructions are full sentences");
  CHECK(full * 10 >= 32 * 8);
  CHECK(handbook["stats"]["full_sentences"] == full);  // the handbook reports the same count
}

TEST_CASE("bad lines are reported and skipped and --strict exits 4 and a missing file exits 1 naming it", "[e2e][mpi]") {
  auto dir = test::temp_dir("patterns-cli-bad");
  const std::string corpus = (dir / "bad.jsonl").string();
  test::write_file(corpus, R"({"question": "q", "reasoning": "A first sentence that is long.", "solution": "1"})" "\n"
                           "{not json\n"
                           R"({"question": "q", "reasoning": "A first sentence that is long.", "solution": "2"})" "\n");
  const std::string out = (dir / "h.json").string();
  for (int ranks : {1, 2}) {
    INFO("ranks " << ranks);
    auto lenient = run_at(ranks, "patterns --mode exact --corpus " + corpus + " --out " + out);
    INFO(lenient.output);
    CHECK(lenient.status == 0);
    CHECK_THAT(lenient.output, Contains(corpus + ":2: malformed JSON") && Contains("2 records, 1 bad line"));
    CHECK(read_json(out)["patterns"][0]["support"] == 2);
    auto strict = run_at(ranks, "patterns --strict --mode exact --corpus " + corpus + " --out " + out);
    CHECK(strict.status == 4);
    auto missing = run_at(ranks, "patterns --corpus " + (dir / "absent.jsonl").string() + " --out " + out);
    CHECK(missing.status == 1);
    CHECK_THAT(missing.output, Contains((dir / "absent.jsonl").string()) && Contains("not found"));
  }
}

TEST_CASE("patterns --holdout reports coverage and --import reads a behavior handbook for augment", "[e2e][mpi]") {
  auto dir = test::temp_dir("patterns-cli-augment");
  const std::string sample = std::string(METAREUSE_SOURCE_DIR) + "/datasets/sample_reasoning.jsonl";
  const std::string handbook = (dir / "h.json").string();
  auto mined = run_metareuse("patterns --corpus " + sample + " --holdout " + sample + " --out " + handbook);
  INFO(mined.output);
  REQUIRE(mined.status == 0);
  CHECK_THAT(mined.output, Contains("holdout coverage"));
  CHECK(read_json(handbook)["stats"]["holdout"]["records"] == 400);

  std::string outputs[2];
  for (int ranks : {1, 3}) {
    auto out = dir / ("augmented" + std::to_string(ranks) + ".jsonl");
    auto result = run_at(ranks, "augment --mode retrieval --top-k 3 --corpus " + sample + " --handbook " + handbook +
                                    " --out " + out.string());
    INFO(result.output);
    REQUIRE(result.status == 0);
    outputs[ranks == 1 ? 0 : 1] = read_file(out);
    CHECK_FALSE(std::filesystem::exists(out.string() + ".part-0"));
  }
  CHECK(outputs[0] == outputs[1]);  // the same examples, in the same order, at any rank count
  std::istringstream lines(outputs[0]);
  std::string line;
  std::size_t count = 0;
  while (std::getline(lines, line)) {
    json example = json::parse(line);
    CHECK(example.contains("prompt"));
    CHECK(example.contains("target"));
    CHECK(example["patterns"].size() <= 3);
    ++count;
  }
  CHECK(count == 400);

  test::write_file(dir / "behaviors.json",
                   R"({"behavior_unit_rate": "Divide the total by the count to get the amount for one.",)"
                   R"( "behavior_check_answer": "Substitute the answer back into the question."})");
  auto imported = run_metareuse("patterns --import " + (dir / "behaviors.json").string() + " --out " + handbook);
  INFO(imported.output);
  REQUIRE(imported.status == 0);
  CHECK(read_json(handbook)["patterns"][0]["name"] == "behavior_unit_rate");
  CHECK(read_json(handbook)["patterns"][0]["instruction"] == "Divide the total by the count to get the amount for one.");
  auto out = dir / "imported.jsonl";
  auto augmented = run_metareuse("augment --corpus " + sample + " --handbook " + handbook + " --out " + out.string());
  REQUIRE(augmented.status == 0);
  std::ifstream in(out);
  std::getline(in, line);
  CHECK_THAT(json::parse(line)["prompt"].get<std::string>(),
             Contains("Consider these behaviors: behavior_unit_rate: Divide the total by the count to get the amount "
                      "for one; behavior_check_answer: Substitute the answer back into the question. "));
}

TEST_CASE("run writes handbook.json and augmented.jsonl into the run folder", "[e2e]") {
  auto dir = test::temp_dir("patterns-cli-run");
  auto result = run_metareuse("run --config configs/demo.json --set run.out_dir=" + dir.string());
  INFO(result.output);
  CHECK_THAT(result.output, Contains("stage patterns   done") && Contains("stage augment    done"));
  REQUIRE(std::filesystem::exists(dir / "handbook.json"));
  REQUIRE(std::filesystem::exists(dir / "augmented.jsonl"));
  CHECK(read_json(dir / "handbook.json")["records"] == 400);
}

TEST_CASE("patterns --mode reflect: no model (64), a bad model path or a prompt without {reasoning} (1), no handbook",
          "[e2e][mpi]") {
  auto dir = test::temp_dir("patterns-cli-reflect-errors");
  const std::string sample = "datasets/sample_reasoning.jsonl";
  const auto out = dir / "handbook.json";
  test::write_file(dir / "no_slot.txt", "Problem: {question}\nWrite behaviors.\n");
  for (int ranks : {1, 2}) {
    INFO("ranks " << ranks);
    const std::string base = "patterns --mode reflect --corpus " + sample + " --out " + out.string();
    auto no_model = run_at(ranks, base);
    INFO(no_model.output);
    CHECK(no_model.status == 64);  // a usage error
    CHECK_THAT(no_model.output, Contains("needs --model (patterns.model)"));
    CHECK_FALSE(std::filesystem::exists(out));

    const std::string absent = (dir / "no-such-model").string();
    auto bad_model = run_at(ranks, base + " --model " + absent);
    INFO(bad_model.output);
    CHECK(bad_model.status == 1);
    CHECK_THAT(bad_model.output, Contains(absent));
    CHECK_FALSE(std::filesystem::exists(out));

    // The prompt is checked before any model is opened.
    auto no_slot = run_at(ranks, base + " --model " + absent + " --reflect-prompt " + (dir / "no_slot.txt").string());
    INFO(no_slot.output);
    CHECK(no_slot.status == 1);
    CHECK_THAT(no_slot.output, Contains((dir / "no_slot.txt").string()) && Contains("no {reasoning} placeholder"));
    CHECK_FALSE(std::filesystem::exists(out));
  }
  // Mining with a model phrases the patterns with it: a bad path fails before the mining, naming it.
  auto mined = run_metareuse("patterns --corpus " + sample + " --model /nonexistent --out " + out.string());
  INFO(mined.output);
  CHECK(mined.status == 1);
  CHECK_THAT(mined.output, Contains("/nonexistent"));
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("patterns --model phrases each pattern once, dealt across ranks, the same at 1 and 2 ranks, and a reply "
          "without a behavior keeps the mined sentence",
          "[e2e][mpi]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  const std::string model = shared + "/fixtures/hf_tiny_llama32";
  if (!std::filesystem::exists(model + "/model.safetensors")) {
    METAREUSE_SKIP("no tiny fixture model at " + model + " (../shared/fixtures/make_fixtures.py makes it)");
    return;
  }
  auto dir = test::temp_dir("patterns-cli-phrasing");
  const std::string sample = "datasets/sample_reasoning.jsonl";
  // The fixture has 512 embedding rows and no tokenizer: a 512-piece one trained here covers every id it writes.
  auto tokenizer = run_metareuse("tokenize --train " + sample + " --vocab-size 512 --tokenizer " +
                                 (dir / "spm.model").string());
  INFO(tokenizer.output);
  REQUIRE(tokenizer.status == 0);
  // A short prompt: the fixture's positions stop at 256.
  test::write_file(dir / "phrase.txt", "Pattern: {pattern}\nBehavior:");
  const std::string common = "patterns --corpus " + sample + " --top-k 4";
  auto plain = run_metareuse(common + " --out " + (dir / "mined.json").string());
  INFO(plain.output);
  REQUIRE(plain.status == 0);
  const json mined = read_json(dir / "mined.json");
  REQUIRE(mined["patterns"].size() == 4);

  const std::string phrase = common + " --model " + model + " --tokenizer " + (dir / "spm.model").string() +
                             " --set tokenizer.template=plain --phrase-prompt " + (dir / "phrase.txt").string() +
                             " --max-new-tokens 12 --batch-size 3 --set log.level=debug --set log.all_ranks=true";
  json first;
  for (int ranks : {1, 2}) {
    const auto out = dir / ("phrased" + std::to_string(ranks) + ".json");
    auto result = run_at(ranks, phrase + " --out " + out.string());
    INFO("ranks " << ranks << "\n" << result.output);
    REQUIRE(result.status == 0);
    CHECK_THAT(result.output, Contains("phrasing: 4 replies for 4 patterns"));
    // One generation per pattern, on rank i % ranks.
    for (int pattern = 0; pattern < 4; ++pattern) {
      const std::string line = "phrasing: pattern " + std::to_string(pattern) + " replied";
      CHECK(test::count_of(result.output, line) == 1);
      CHECK_THAT(result.output, Contains(fmt::format("[rank {}/{}] [debug] {}", pattern % ranks, ranks, line)));
    }
    json handbook = read_json(out);
    const json& phrasing = handbook["stats"]["phrasing"];
    CHECK(phrasing["replies"] == 4);
    CHECK(phrasing["phrased"].get<int>() + phrasing["kept_mined"].get<int>() == 4);
    // The random fixture writes no `behavior_name: instruction` line.
    CHECK(phrasing["kept_mined"].get<int>() >= 1);
    int kept = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(handbook["patterns"][i]["text"] == mined["patterns"][i]["text"]);
      if (handbook["patterns"][i]["instruction"] == mined["patterns"][i]["instruction"] &&
          handbook["patterns"][i]["name"] == mined["patterns"][i]["name"]) {
        ++kept;
      }
    }
    CHECK(kept == phrasing["kept_mined"].get<int>());
    CHECK(handbook["config"]["model"] == model);
    handbook["stats"].erase("ranks");
    if (ranks == 1) {
      first = handbook;
    } else {
      CHECK(handbook == first);
    }
  }
}

}  // namespace metareuse
