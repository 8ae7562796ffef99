// Augmentation: the seed's global prefix, BM25 retrieval per question, the
// output examples (prompt and target parts, the patterns each was given), and
// the prompt rule eval shares with augment (PromptPolicy).
#include <catch2/catch.hpp>

#include <fstream>

#include "metareuse/augment/augment.h"
#include "metareuse/augment/augmented_example.h"
#include "metareuse/augment/prompt.h"
#include "metareuse/core/error.h"
#include "metareuse/distributed/communicator.h"
#include "patterns_fixtures.h"

namespace metareuse {
namespace {

Pattern make_pattern(std::string text, std::string behavior, std::uint64_t support) {
  return {std::move(text), support, "phrase", {}, std::move(behavior), ""};
}

Handbook small_handbook() {
  Handbook handbook;
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

TEST_CASE("the prefix lists behaviors with their instructions") {
  auto handbook = small_handbook();
  CHECK(pattern_prefix({&handbook.patterns[0], &handbook.patterns[1]}) ==
        "Consider these behaviors: behavior_total_number: the total number of; behavior_dividing_both_sides: "
        "dividing both sides by. ");
  // The instruction is shown when there is one, without its final period.
  handbook.patterns[0].instruction = "Add the parts to get the total number of items.";
  CHECK(pattern_prefix({&handbook.patterns[0]}) ==
        "Consider these behaviors: behavior_total_number: Add the parts to get the total number of items. ");
  CHECK(pattern_prefix({}) == "");
}

TEST_CASE("BM25 retrieval ranks the patterns that share the question's words") {
  auto handbook = small_handbook();
  PatternIndex index(handbook.patterns, 1.2, 0.75);
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
  AugmentOptions options;
  options.top_k = 2;

  auto stats = augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options,
                                       (dir / "global.jsonl").string(), world);
  CHECK(stats.examples == 2);
  CHECK(stats.corpus.bad_lines == 1);
  auto global = read_lines((dir / "global.jsonl").string());
  REQUIRE(global.size() == 2);
  CHECK(global[0]["id"] == "corpus.jsonl:1");
  CHECK(global[0]["prompt"] ==
        "Consider these behaviors: behavior_total_number: the total number of; behavior_dividing_both_sides: dividing both sides by. How fast is a car "
        "that goes 100 miles in 2 hours, in miles per hour?\n");
  CHECK(global[0]["target"] == "100/2 = 50.\n#### 50");
  CHECK(global[1]["target"] == "3*4 = <<3*4=12>>12 apples.\n\n#### 12");
  CHECK(global[1]["patterns"] == nlohmann::json({"the total number of", "dividing both sides by"}));
  CHECK(global[1]["behaviors"] == nlohmann::json({"behavior_total_number", "behavior_dividing_both_sides"}));

  options.mode = AugmentMode::kRetrieval;
  stats = augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options,
                                  (dir / "retrieval.jsonl").string(), world);
  CHECK(stats.retrieved == 1);  // the apples question shares no word with any pattern
  auto retrieval = read_lines((dir / "retrieval.jsonl").string());
  REQUIRE(retrieval.size() == 2);
  CHECK(retrieval[0]["patterns"] == nlohmann::json({"the speed in miles per hour"}));
  CHECK(retrieval[0]["prompt"].get<std::string>().rfind(
            "Consider these behaviors: behavior_speed_miles_hour: the speed in miles per hour. ", 0) == 0);
  CHECK(retrieval[1]["patterns"] == global[1]["patterns"]);  // falls back to the global top
}

// Used mode (each example gets the patterns its reasoning uses), none, and
// retrieval by context (the questions of the examples that use a pattern).
TEST_CASE("used mode gives each example the patterns its own reasoning uses, none gives none") {
  CHECK(parse_augment_mode("used") == AugmentMode::kUsed);
  CHECK(parse_augment_mode("none") == AugmentMode::kNone);
  CHECK_THROWS_AS(parse_augment_mode("usd"), ConfigError);
  auto self = make_self_communicator();
  Communicator& world = *self;
  auto dir = test::temp_dir("augment-used");
  test::write_file(dir / "corpus.jsonl",
                   R"({"question": "Solve 3x = 12.", "reasoning": "Dividing both sides by 3 gives x = 4. The total number of steps is 1.", "solution": "4"})" "\n"
                   R"({"question": "Tom has 3 bags of 4 apples.", "reasoning": "3*4 = 12.", "solution": "12"})" "\n");
  auto handbook = small_handbook();
  UsedPatterns used(handbook.patterns);
  // Handbook order, whatever the order in the text; the limit keeps the first.
  CHECK(used.find("Dividing both sides by 3. The total number of apples.") == std::vector<std::size_t>{0, 1});
  CHECK(used.find("Dividing both sides by 3. The total number of apples.", 1) == std::vector<std::size_t>{0});
  CHECK(used.find("the total numbers of").empty());  // word-aligned only

  AugmentOptions options;
  options.top_k = 2;
  options.mode = AugmentMode::kUsed;
  auto stats = augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options,
                                       (dir / "used.jsonl").string(), world);
  CHECK(stats.retrieved == 1);
  auto examples = read_lines((dir / "used.jsonl").string());
  REQUIRE(examples.size() == 2);
  CHECK(examples[0]["patterns"] == nlohmann::json({"the total number of", "dividing both sides by"}));
  CHECK(examples[0]["prompt"] == "Consider these behaviors: behavior_total_number: the total number of; behavior_dividing_both_sides: dividing both sides by. Solve 3x = 12.\n");
  CHECK(examples[1]["patterns"] == nlohmann::json::array());
  CHECK(examples[1]["prompt"] == "Tom has 3 bags of 4 apples.\n");

  options.mode = AugmentMode::kNone;
  augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options, (dir / "none.jsonl").string(), world);
  auto plain = read_lines((dir / "none.jsonl").string());
  REQUIRE(plain.size() == 2);
  CHECK(plain[0]["prompt"] == "Solve 3x = 12.\n");
  CHECK(plain[0]["patterns"] == nlohmann::json::array());
}

TEST_CASE("context retrieval ranks the pattern used by this kind of question above one used by every kind") {
  Handbook handbook;
  handbook.patterns = {
      make_pattern("one step at a time", "behavior_one_step_time", 30),       // used by every kind
      make_pattern("multiply the count by the price", "behavior_multiply_count_price", 10),  // shop questions
      make_pattern("divide the total by the number of friends", "behavior_divide_total_friends", 10),  // sharing
  };
  auto dir = test::temp_dir("augment-contexts");
  std::string lines;
  for (int i = 0; i < 10; ++i) {
    lines += R"({"question": "Ava buys 3 apples for $2 each. How much does Ava spend?", "patterns": ["one step at a time"]})" "\n";
    lines += R"({"question": "Ben shares 6 cards equally among 3 friends. How many cards does each friend get?", "patterns": ["one step at a time"]})" "\n";
    lines += R"({"question": "Ava buys 4 pens for $3 each. How much does Ava spend?", "patterns": ["multiply the count by the price", "unknown pattern"]})" "\n";
    lines += R"({"question": "Ben shares 8 cards equally among 2 friends. How many cards does each friend get?", "patterns": ["divide the total by the number of friends"]})" "\n";
  }
  test::write_file(dir / "augmented.jsonl", lines);
  auto contexts = read_pattern_contexts((dir / "augmented.jsonl").string(), handbook);
  CHECK(contexts.examples == std::vector<std::uint64_t>{20, 10, 10});
  // "buys" is in half of the first pattern's questions and all of the second's.
  auto share_of = [&](std::size_t pattern, const std::string& term) {
    for (const auto& [t, share] : contexts.term_shares[pattern]) {
      if (t == term) return share;
    }
    return 0.0;
  };
  CHECK(share_of(0, "buys") == Approx(0.5));
  CHECK(share_of(1, "buys") == Approx(1.0));
  CHECK(share_of(2, "buys") == 0.0);

  ContextIndex index(handbook.patterns, contexts, 1.2, 0.75);
  // New names and numbers: only the kind of question matters.
  CHECK(index.retrieve("Uma buys 7 shells for $5 each. How much does Uma spend?", 1) == std::vector<std::size_t>{1});
  CHECK(index.retrieve("Zane shares 9 books equally among 3 friends. How many books does each friend get?", 2) ==
        std::vector<std::size_t>{2, 0});
  CHECK(index.retrieve("Zebra quokka?", 3).empty());

  test::write_file(dir / "bad.jsonl", "{\"question\": \"q\"}\n");
  CHECK_THROWS_WITH(read_pattern_contexts((dir / "bad.jsonl").string(), handbook),
                    Catch::Contains("bad.jsonl:1"));
}

// Eval builds a test prompt with the rule augment builds training
// prompts with, so a training question asked at test time gets its training
// prompt. In used mode the test prompt cannot see the reasoning: it retrieves
// patterns from the question by their contexts, which gives the training
// prompt's pattern here because each kind of question uses one pattern.
TEST_CASE("the test prompt of a training question is its training prompt, in every augment mode") {
  auto self = make_self_communicator();
  Communicator& world = *self;
  auto dir = test::temp_dir("augment-prompt-policy");
  Handbook handbook;
  handbook.records = 4;
  handbook.patterns = {
      make_pattern("multiply the count by the price", "behavior_multiply_count_price", 2),
      make_pattern("divide the total by the number of friends", "behavior_divide_total_friends", 2),
  };
  test::write_file(dir / "corpus.jsonl",
                   R"({"question": "Ava buys 3 apples for $2 each. How much does Ava spend?", "reasoning": "Multiply the count by the price: 3 * 2 = 6.", "solution": "6"})" "\n"
                   R"({"question": "Ben shares 6 cards equally among 3 friends. How many cards does each friend get?", "reasoning": "Divide the total by the number of friends: 6 / 3 = 2.", "solution": "2"})" "\n"
                   R"({"question": "Ava buys 4 pens for $3 each. How much does Ava spend?", "reasoning": "Multiply the count by the price: 4 * 3 = 12.", "solution": "12"})" "\n"
                   R"({"question": "Ben shares 8 cards equally among 2 friends. How many cards does each friend get?", "reasoning": "Divide the total by the number of friends: 8 / 2 = 4.", "solution": "4"})" "\n");
  for (AugmentMode mode : {AugmentMode::kGlobal, AugmentMode::kRetrieval,
                                    AugmentMode::kUsed, AugmentMode::kNone}) {
    INFO("augment mode " << augment_mode_name(mode));
    AugmentOptions options;
    options.mode = mode;
    options.top_k = 1;
    const std::string augmented = (dir / (std::string(augment_mode_name(mode)) + ".jsonl")).string();
    augment_corpus({(dir / "corpus.jsonl").string()}, handbook, options, augmented, world);
    // What eval reads in used mode: the contexts of the training examples.
    const PatternContexts contexts = read_pattern_contexts(augmented, handbook);
    const PromptPolicy policy(&handbook, mode, options.top_k, options.bm25_k1, options.bm25_b, &contexts);
    const auto examples = read_lines(augmented);
    REQUIRE(examples.size() == 4);
    for (const auto& example : examples) {
      CHECK(policy.test_prompt(example["question"].get<std::string>()) == example["prompt"].get<std::string>());
    }
  }
}

// augmented.jsonl has one writer and one struct: a line goes out in the
// writer's key order and comes back as the same example; a reader that needs
// a key the line lacks is told which.
TEST_CASE("an augmented example round-trips through its line, and a missing key is named") {
  AugmentedExample example;
  example.id = "corpus.jsonl:3";
  example.prompt = "Consider patterns like: x\nQ?\n";
  example.target = "so 2 + 2 = 4\n#### 4";
  example.patterns = {"x", "y"};
  example.behaviors = {"behavior_x", "behavior_y"};
  example.question = "Q?";
  example.solution = "4";
  const std::string line = example.to_json().dump();
  CHECK(line.rfind(R"({"id":"corpus.jsonl:3","prompt":)", 0) == 0);
  CHECK(line.find(R"("question":"Q?","solution":"4"})") != std::string::npos);

  AugmentedExample back = AugmentedExample::from_json(
      nlohmann::json::parse(line), {AugmentedExample::kPrompt, AugmentedExample::kTarget, AugmentedExample::kPatterns});
  CHECK(back.id == example.id);
  CHECK(back.prompt == example.prompt);
  CHECK(back.target == example.target);
  CHECK(back.patterns == example.patterns);
  CHECK(back.behaviors == example.behaviors);
  CHECK(back.question == example.question);
  CHECK(back.solution == example.solution);

  CHECK_THROWS_WITH(AugmentedExample::from_json(nlohmann::json{{"prompt", "p"}}, {AugmentedExample::kPrompt,
                                                                                    AugmentedExample::kTarget}),
                    Catch::Contains("no string field \"target\""));
  CHECK_THROWS_WITH(AugmentedExample::from_json(nlohmann::json{{"question", "q"}, {"patterns", "not an array"}},
                                                {AugmentedExample::kQuestion, AugmentedExample::kPatterns}),
                    Catch::Contains("no array field \"patterns\""));
  CHECK_THROWS_WITH(AugmentedExample::from_json(nlohmann::json::array(), {}), Catch::Contains("not a JSON object"));
}

}  // namespace metareuse
