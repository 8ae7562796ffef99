// The reasoning world's generator (see world.h).
#include "metareuse/world/world.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // records

#include <algorithm>
#include <cmath>
#include <random>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"

namespace metareuse {
namespace {

// Seeded draws with a range reduction of our own, so the bytes do not depend on
// the standard library (std::uniform_int_distribution is implementation-defined).
class Draw {
 public:
  explicit Draw(std::uint64_t seed) : engine_(seed) {}
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(engine_() % n); }
  template <typename T>
  const T& pick(const std::vector<T>& values) { return values[below(values.size())]; }
  template <typename T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[below(i)]);
  }

 private:
  std::mt19937_64 engine_;
};

// Operands run 2..6 (a fence has 3..6 sides): the long way's longest answer
// then fits 160 tokens of the project's 1000-piece tokenizer, which the CPU
// experiment's training budget needs (measured: about 1 s per step of 16
// padded sequences of a debug-tiny model on the loaded 2-core machine).
constexpr int kLargestOperand = 6;

struct Item {
  std::string singular, plural;
};
const std::vector<Item>& items() {
  static const std::vector<Item> list = {{"apple", "apples"},   {"pencil", "pencils"}, {"sticker", "stickers"},
                                         {"marble", "marbles"}, {"book", "books"},     {"cookie", "cookies"},
                                         {"card", "cards"},     {"shell", "shells"}};
  return list;
}

// The long way's opener, in a few wordings.
const std::vector<std::string>& openers() {
  static const std::vector<std::string> list = {"Take it one step at a time.", "Work it out one step at a time.",
                                                "Go through it one step at a time."};
  return list;
}

std::string shape_name(int sides) {
  static const char* names[] = {"", "", "", "triangle", "square", "pentagon", "hexagon"};
  static_assert(sizeof(names) / sizeof(names[0]) == kLargestOperand + 1);
  return names[sides];
}

// The family's operand pairs: (repetitions, unit), or for share (friends, each).
std::vector<std::pair<int, int>> operand_pairs(const std::string& family) {
  const int first_low = family == "fence" ? 3 : 2;
  std::vector<std::pair<int, int>> pairs;
  for (int a = first_low; a <= kLargestOperand; ++a) {
    for (int b = 2; b <= kLargestOperand; ++b) pairs.emplace_back(a, b);
  }
  return pairs;
}

// Adds `unit` `times` times, one numbered step per line, then restates the
// groups: "Step 1: 3.\nStep 2: 3 + 3 = 6.\n...That is 4 groups of 3, 12 in all.\n".
std::string addition_chain(int times, int unit) {
  std::string lines = fmt::format("Step 1: {}.\n", unit);
  for (int k = 2; k <= times; ++k) lines += fmt::format("Step {}: {} + {} = {}.\n", k, (k - 1) * unit, unit, k * unit);
  return lines + fmt::format("That is {} groups of {}, {} in all.\n", times, unit, times * unit);
}

Problem make_problem(const std::string& family, std::pair<int, int> operands, Style style, const std::string& name,
                     Draw& draw) {
  const auto found = std::find_if(world_families().begin(), world_families().end(),
                                  [&](const FamilyInfo& f) { return f.name == family; });
  if (found == world_families().end()) throw Error(fmt::format("world: unknown family '{}'", family));
  const auto& move = found->move;
  const Item& item = draw.pick(items());
  const std::string opener = draw.pick(openers());
  const auto [a, b] = operands;
  const int product = a * b;
  Problem problem;
  problem.family = family;
  problem.style = style;
  problem.name = name;
  problem.operands = operands;
  std::string short_line = fmt::format("{} * {} = {}.\n", a, b, product);
  std::string long_lines = opener + "\n" + addition_chain(a, b);
  std::string restated;
  if (family == "shop") {
    problem.question = fmt::format("{} buys {} {} for ${} each. How much does {} spend?", name, a, item.plural, b, name);
    restated = fmt::format("So the total cost is ${}.", product);
  } else if (family == "travel") {
    problem.question = fmt::format("{} walks {} km every hour for {} hours. How far does {} walk?", name, b, a, name);
    short_line = fmt::format("{} * {} = {}.\n", b, a, product);
    restated = fmt::format("So the distance is {} km.", product);
  } else if (family == "boxes") {
    problem.question = fmt::format("{} fills {} boxes with {} {} in each box. How many {} are there in all?", name, a,
                                   b, item.plural, item.plural);
    restated = fmt::format("So there are {} {} in all.", product, item.plural);
  } else if (family == "share") {
    // a friends, b each: the total is given, the share asked.
    problem.question = fmt::format("{} shares {} {} equally among {} friends. How many {} does each friend get?", name,
                                   product, item.plural, a, item.plural);
    short_line = fmt::format("{} / {} = {}.\n", product, a, b);
    long_lines = opener + "\n";
    for (int round = 1; round <= b; ++round) {
      long_lines += fmt::format("Round {}: {} - {} = {}.\n", round, product - (round - 1) * a, a, product - round * a);
    }
    long_lines += fmt::format("That is {} rounds of {}, one each round.\n", b, a);
    restated = fmt::format("So each friend gets {} {}.", b, item.plural);
  } else if (family == "fence") {
    problem.question = fmt::format("{} fences a {} garden with {} equal sides of {} meters each. What is the perimeter?",
                                   name, shape_name(a), a, b);
    restated = fmt::format("So the perimeter is {} meters.", product);
  } else {
    throw Error(fmt::format("world: unknown family '{}'", family));
  }
  problem.solution = std::to_string(family == "share" ? b : product);
  problem.reasoning = style == Style::kShort ? move + "\n" + short_line + restated : long_lines + restated;
  return problem;
}

}  // namespace

const char* style_name(Style style) { return style == Style::kShort ? "short" : "long"; }

const std::vector<FamilyInfo>& world_families() {
  static const std::vector<FamilyInfo> list = {
      {"shop", "Multiply the count by the price."},
      {"travel", "The distance is the rate times the time."},
      {"boxes", "Multiply the number of groups by the group size."},
      {"share", "Divide the total by the number of friends."},
      {"fence", "The perimeter is the number of sides times the side length."},
  };
  return list;
}

const std::vector<std::string>& world_train_names() {
  static const std::vector<std::string> list = {"Ava",  "Ben",   "Chloe", "Dev",   "Elena", "Farid", "Grace",
                                                "Hugo", "Iris",  "Jonah", "Kemi",  "Liam",  "Maya",  "Noor",
                                                "Omar", "Priya", "Quinn", "Rosa",  "Sami",  "Tara"};
  return list;
}

const std::vector<std::string>& world_test_names() {
  static const std::vector<std::string> list = {"Uma",  "Victor", "Wendy", "Xavier", "Yara",
                                                "Zane", "Bianca", "Carlos", "Dalia", "Emeka"};
  return list;
}

World generate_world(const WorldOptions& options) {
  if (!(options.short_share >= 0.0 && options.short_share <= 1.0)) {
    throw ConfigError(fmt::format("world.short_share must be in [0, 1], got {}", options.short_share));
  }
  if (!(options.heldout_pair_share > 0.0 && options.heldout_pair_share < 1.0)) {
    throw ConfigError(fmt::format("world.heldout_pair_share must be in (0, 1), got {}", options.heldout_pair_share));
  }
  Draw draw(options.seed);
  // Each family's operand pairs, split once into test and train pairs.
  std::vector<std::vector<std::pair<int, int>>> train_pairs, test_pairs;
  for (const FamilyInfo& family : world_families()) {
    std::vector<std::pair<int, int>> pairs = operand_pairs(family.name);
    draw.shuffle(pairs);
    const auto held = static_cast<std::size_t>(std::ceil(options.heldout_pair_share * static_cast<double>(pairs.size())));
    test_pairs.emplace_back(pairs.begin(), pairs.begin() + static_cast<std::ptrdiff_t>(held));
    train_pairs.emplace_back(pairs.begin() + static_cast<std::ptrdiff_t>(held), pairs.end());
  }
  // Exactly round(short_share * N) short problems, at shuffled positions.
  const auto shorts = static_cast<std::size_t>(std::llround(options.short_share * static_cast<double>(options.train_records)));
  std::vector<Style> styles(options.train_records, Style::kLong);
  std::fill(styles.begin(), styles.begin() + static_cast<std::ptrdiff_t>(shorts), Style::kShort);
  draw.shuffle(styles);

  World world;
  for (std::size_t i = 0; i < options.train_records; ++i) {
    const std::size_t family = draw.below(world_families().size());
    const auto& pair = draw.pick(train_pairs[family]);
    const std::string& name = draw.pick(world_train_names());
    world.train.push_back(make_problem(world_families()[family].name, pair, styles[i], name, draw));
  }
  // Test: families in turn, so each has the same number of questions (within one).
  for (std::size_t i = 0; i < options.test_records; ++i) {
    const std::size_t family = i % world_families().size();
    const auto& pair = draw.pick(test_pairs[family]);
    const std::string& name = draw.pick(world_test_names());
    world.test.push_back(make_problem(world_families()[family].name, pair, Style::kShort, name, draw));
  }
  return world;
}

std::string problem_json(const Problem& problem) {
  nlohmann::ordered_json record;
  record["question"] = problem.question;
  record["reasoning"] = problem.reasoning;
  record["solution"] = problem.solution;
  record["family"] = problem.family;
  record["style"] = style_name(problem.style);
  return record.dump();
}

void write_problems(const std::vector<Problem>& problems, const std::string& path) {
  AtomicFile out(path);  // every write checked; the old file stays until the new one is complete
  for (const Problem& problem : problems) out.write(problem_json(problem) + '\n');
  out.commit();
}

void write_world(const World& world, const std::string& out_dir) {
  write_problems(world.train, out_dir + "/" + kTrainFile);
  write_problems(world.test, out_dir + "/" + kTestFile);
}

}  // namespace metareuse
