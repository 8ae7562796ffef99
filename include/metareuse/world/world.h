// The reasoning world: a seeded generator of small word problems,
// each solvable two ways, for an experiment that checks whether reuse shortens
// reasoning.
//   long way   enumerate: an opener ("Take it one step at a time."), then one
//              numbered step per unit ("Step 2: 3 + 3 = 6."; equal sharing
//              deals out rounds: "Round 2: 12 - 4 = 8."), then the groups
//              restated ("That is 4 groups of 3, 12 in all."), then the
//              restated result. Its wording repeats across families and
//              never repeats the question's nouns (item names, units);
//   short way  the family's reusable move, phrased identically in every
//              problem ("Multiply the count by the price."), one operation,
//              then the same restated result.
// Families: shop (count x price), travel (rate x time), boxes (groups x size),
// share (equal sharing), fence (perimeter of equal sides). Operands are 2..6,
// so every result is at most 36 and a tiny model can learn the arithmetic.
//
// Held-out test problems differ from training in two ways: their person names
// come from a disjoint list, and each family's operand pairs are split once
// (seeded): a pair used by test problems never occurs in that family's
// training problems.
//
// Deterministic: the same options give the same bytes on any platform (the
// generator draws from std::mt19937_64 with its own range reduction, not
// std::uniform_int_distribution, whose output is implementation-defined).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace metareuse {

enum class Style { kLong, kShort };
const char* style_name(Style style);

struct Problem {
  std::string family;    // "shop", "travel", ...
  Style style = Style::kLong;
  std::string question;
  std::string reasoning;  // the chosen way, lines separated by '\n'
  std::string solution;   // the final number
  std::string name;       // the person in the question ("" for none)
  std::pair<int, int> operands;  // the family's operand pair
};

struct WorldOptions {
  std::uint64_t seed = 7;
  std::size_t train_records = 4000;
  std::size_t test_records = 100;
  double short_share = 0.25;         // share of training problems written the short way
  double heldout_pair_share = 0.2;   // share of each family's operand pairs kept for test
};

struct World {
  std::vector<Problem> train;  // styles mixed by short_share
  std::vector<Problem> test;   // reasoning: the short way (not used to score; answers are in solution)
};

World generate_world(const WorldOptions& options);

// The families, their reusable moves (the short way's first line) and the name lists.
struct FamilyInfo {
  std::string name;
  std::string move;
};
const std::vector<FamilyInfo>& world_families();
const std::vector<std::string>& world_train_names();
const std::vector<std::string>& world_test_names();

// One record per line: {"question", "reasoning", "solution", "family", "style"}
// (the seed's corpus format, plus two fields the pipeline ignores).
std::string problem_json(const Problem& problem);
// Writes problems to `path` (tmp + rename); throws Error on failure.
void write_problems(const std::vector<Problem>& problems, const std::string& path);

// A world folder: the training corpus and the held-out test problems.
inline constexpr const char* kTrainFile = "train.jsonl";
inline constexpr const char* kTestFile = "test.jsonl";
// Writes world.train to <out_dir>/train.jsonl and world.test to <out_dir>/test.jsonl.
void write_world(const World& world, const std::string& out_dir);

}  // namespace metareuse
