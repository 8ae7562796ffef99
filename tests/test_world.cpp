// The reasoning world: the committed datasets regenerate byte for byte,
// every answer is right (recomputed from the question text alone), test names
// and operand pairs are disjoint from training, and the style mix is as asked.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "test_paths.h"  // METAREUSE_SOURCE_DIR
#include "test_support.h"  // read_file
#include "metareuse/core/error.h"
#include "metareuse/world/world.h"

namespace metareuse {
namespace {

using metareuse::test::read_file;

std::string as_jsonl(const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& problem : problems) out += problem_json(problem) + "\n";
  return out;
}

// The answer recomputed from the question alone (an independent reading of each family's template).
int answer_from_question(const Problem& problem) {
  static const std::vector<std::pair<std::string, std::regex>> rules = {
      {"shop", std::regex(R"(buys (\d+) \w+ for \$(\d+) each)")},
      {"travel", std::regex(R"(walks (\d+) km every hour for (\d+) hours)")},
      {"boxes", std::regex(R"(fills (\d+) boxes with (\d+) \w+ in each box)")},
      {"share", std::regex(R"(shares (\d+) \w+ equally among (\d+) friends)")},
      {"fence", std::regex(R"(with (\d+) equal sides of (\d+) meters each)")},
  };
  for (const auto& [family, rule] : rules) {
    if (family != problem.family) continue;
    std::smatch match;
    REQUIRE(std::regex_search(problem.question, match, rule));
    const int first = std::stoi(match[1]), second = std::stoi(match[2]);
    REQUIRE(first > 0);
    REQUIRE(second > 0);
    return family == "share" ? first / second : first * second;
  }
  FAIL("unknown family " << problem.family);
  return -1;
}

// Every "a op b = c." line of the reasoning is right arithmetic.
void check_arithmetic(const std::string& reasoning) {
  static const std::regex line(R"((\d+) ([-+*/]) (\d+) = (\d+)\.)");
  int lines = 0;
  for (auto it = std::sregex_iterator(reasoning.begin(), reasoning.end(), line); it != std::sregex_iterator(); ++it) {
    const int a = std::stoi((*it)[1]), b = std::stoi((*it)[3]), c = std::stoi((*it)[4]);
    const char op = std::string((*it)[2])[0];
    const int expected = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b;
    INFO(reasoning);
    CHECK(c == expected);
    if (op == '/') CHECK(a % b == 0);
    ++lines;
  }
  CHECK(lines >= 1);
}

bool has_word(const std::string& text, const std::string& word) {
  return std::regex_search(text, std::regex("\\b" + word + "\\b"));
}

}  // namespace

TEST_CASE("the committed world regenerates byte for byte") {
  // `metareuse world` with the config defaults (world.seed 7, 4000 train, 100 test, short share 0.25).
  World generated = generate_world(WorldOptions{});
  const std::string folder = std::string(METAREUSE_SOURCE_DIR) + "/datasets/world/";
  const std::string train = read_file(folder + "train.jsonl");
  const std::string test = read_file(folder + "test.jsonl");
  REQUIRE(!train.empty());
  CHECK(as_jsonl(generated.train) == train);
  CHECK(as_jsonl(generated.test) == test);
}

TEST_CASE("the world is deterministic and the seed matters") {
  WorldOptions options;
  options.train_records = 300;
  options.test_records = 20;
  CHECK(as_jsonl(generate_world(options).train) == as_jsonl(generate_world(options).train));
  WorldOptions other = options;
  other.seed = options.seed + 1;
  CHECK(as_jsonl(generate_world(other).train) != as_jsonl(generate_world(options).train));
}

TEST_CASE("every answer is right, in training and test") {
  World generated = generate_world(WorldOptions{});
  for (const auto* split : {&generated.train, &generated.test}) {
    for (const auto& problem : *split) {
      INFO(problem.question << "\n" << problem.reasoning);
      const int answer = answer_from_question(problem);
      CHECK(problem.solution == std::to_string(answer));
      CHECK(answer >= 1);
      CHECK(answer <= 36);  // small numbers
      check_arithmetic(problem.reasoning);
      // The reasoning ends by restating the answer.
      std::smatch last;
      REQUIRE(std::regex_search(problem.reasoning, last, std::regex(R"((\d+)[^\d]*$)")));
      CHECK(last[1] == problem.solution);
    }
  }
}

TEST_CASE("test problems have new names and new operand pairs") {
  World generated = generate_world(WorldOptions{});
  std::set<std::string> train_names(world_train_names().begin(), world_train_names().end());
  for (const std::string& name : world_test_names()) CHECK(train_names.count(name) == 0);
  std::map<std::string, std::set<std::pair<int, int>>> train_pairs;
  for (const auto& problem : generated.train) {
    train_pairs[problem.family].insert(problem.operands);
    for (const std::string& name : world_test_names()) CHECK_FALSE(has_word(problem.question, name));
  }
  std::set<std::string> test_families;
  for (const auto& problem : generated.test) {
    INFO(problem.question);
    test_families.insert(problem.family);
    CHECK(train_pairs[problem.family].count(problem.operands) == 0);
    CHECK(std::find(world_test_names().begin(), world_test_names().end(), problem.name) != world_test_names().end());
    for (const std::string& name : world_train_names()) CHECK_FALSE(has_word(problem.question, name));
  }
  CHECK(test_families.size() == world_families().size());
}

TEST_CASE("the style mix: mostly long, a minority short, each short one uses its family's move") {
  World generated = generate_world(WorldOptions{});
  std::map<std::string, std::string> moves;
  for (const auto& family : world_families()) moves[family.name] = family.move;
  std::size_t shorts = 0;
  std::map<std::string, std::set<std::string>> styles_per_family;
  double long_length = 0, short_length = 0;
  for (const auto& problem : generated.train) {
    const std::string& move = moves.at(problem.family);
    styles_per_family[problem.family].insert(style_name(problem.style));
    if (problem.style == Style::kShort) {
      ++shorts;
      short_length += static_cast<double>(problem.reasoning.size());
      CHECK(problem.reasoning.rfind(move + "\n", 0) == 0);
    } else {
      long_length += static_cast<double>(problem.reasoning.size());
      CHECK(problem.reasoning.find(move) == std::string::npos);
    }
  }
  CHECK(shorts == 1000);  // exactly round(0.25 * 4000)
  CHECK(styles_per_family.size() == world_families().size());
  for (const auto& [family, styles] : styles_per_family) CHECK(styles.size() == 2);
  // The long way is longer on average (characters), by construction.
  CHECK(long_length / 3000.0 > 1.5 * short_length / 1000.0);
}

TEST_CASE("bad world options are refused") {
  WorldOptions options;
  options.short_share = 1.5;
  CHECK_THROWS_AS(generate_world(options), ConfigError);
  options.short_share = 0.25;
  options.heldout_pair_share = 0.0;
  CHECK_THROWS_AS(generate_world(options), ConfigError);
}

}  // namespace metareuse
