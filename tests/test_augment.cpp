// Augmentation: the seed's global prefix, BM25 retrieval per question, and the
// output examples (prompt and target parts, the patterns each was given).
#include <catch2/catch.hpp>

#include <fstream>

#include "metareuse/augment/augment.h"
#include "metareuse/dist/communicator.h"
#include "patterns_fixtures.h"

namespace metareuse {
namespace {

patterns::Pattern make_pattern(std::string text, std::string behavior, std::uint64_t support) {
  return {std::move(text), support, "phrase", {}, std::move(behavior)};
}

patterns::Handbook small_handbook() {
  patterns::Handbook handbook;
  handbook.records = 100;
  handbook.mode = "normalized";
  handbook.patterns = {
      make_pattern("the total number of", "behavior_total_number", 50),
      make_pattern("dividing both sides by", "behavior_dividing_both_sides", 20),
      make_pattern("the speed in miles per hour", "behavior_speed_miles_hour", 10),
  };
  return handbook;
}

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("the global prefix is the seed's Consider patterns like") {
  auto handbook = small_handbook();
  CHECK(augment::pattern_prefix({&handbook.patterns[0], &handbook.patterns[1]}) ==
        "Consider patterns like: the total number of; dividing both sides by. ");
  CHECK(augment::pattern_prefix({}) == "");
}

TEST_CASE("BM25 retrieval ranks the patterns that share the question's words") {
  auto handbook = small_handbook();
  augment::PatternIndex index(handbook.patterns, 1.2, 0.75);
  auto best = index.retrieve("A train goes 60 miles in 2 hours. What is its speed per hour?", 2);
  REQUIRE_FALSE(best.empty());
  CHECK(best[0] == 2);
  auto sides = index.retrieve("Solve by dividing both sides of 3x = 12.", 3);
  REQUIRE_FALSE(sides.empty());
  CHECK(sides[0] == 1);
  CHECK(index.retrieve("Zebra quokka?", 3).empty());
}

TEST_CASE("augment writes prompt/target examples with the patterns each was given") {
  auto self = make_self_communicator();
  Communicator& world = *self;
  auto dir = test::temp_dir("augment");
  test::write_file(dir / "corpus.jsonl",
                   R"({"question": "How fast is a car that goes 100 miles in 2 hours, in miles per hour?", "reasoning": "100/2 = 50.", "solution": "50"})" "\n"
                   R"({"question": "Tom has 3 bags of 4 apples.", "answer": "3*4 = <<3*4=12>>12 apples.\n#### 12"})" "\n"
                   "not json\n");
  auto handbook = small_handbook();
  augment::AugmentOptions options;
  options.top_k = 2;

  auto stats = augment::augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options,
                                       (dir / "global.jsonl").string(), world);
  CHECK(stats.examples == 2);
  CHECK(stats.corpus.bad_lines == 1);
  auto global = read_lines((dir / "global.jsonl").string());
  REQUIRE(global.size() == 2);
  CHECK(global[0]["id"] == "corpus.jsonl:1");
  CHECK(global[0]["prompt"] ==
        "Consider patterns like: the total number of; dividing both sides by. How fast is a car that goes 100 miles "
        "in 2 hours, in miles per hour?\n");
  CHECK(global[0]["target"] == "100/2 = 50.\n#### 50");
  CHECK(global[1]["target"] == "3*4 = <<3*4=12>>12 apples.\n\n#### 12");
  CHECK(global[1]["patterns"] == nlohmann::json({"the total number of", "dividing both sides by"}));
  CHECK(global[1]["behaviors"] == nlohmann::json({"behavior_total_number", "behavior_dividing_both_sides"}));

  options.mode = augment::AugmentMode::kRetrieval;
  stats = augment::augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options,
                                  (dir / "retrieval.jsonl").string(), world);
  CHECK(stats.retrieved == 1);  // the apples question shares no word with any pattern
  auto retrieval = read_lines((dir / "retrieval.jsonl").string());
  REQUIRE(retrieval.size() == 2);
  CHECK(retrieval[0]["patterns"] == nlohmann::json({"the speed in miles per hour"}));
  CHECK(retrieval[0]["prompt"].get<std::string>().rfind("Consider patterns like: the speed in miles per hour. ", 0) == 0);
  CHECK(retrieval[1]["patterns"] == global[1]["patterns"]);  // falls back to the global top
}

}  // namespace metareuse
