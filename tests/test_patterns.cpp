// Pattern mining: the seed's rule against the Python reference
// (../shared/reference/seed_patterns.py) on GSM8K train and on a tricky
// synthetic corpus, identical at 1 to 4 ranks (this binary runs under
// mpiexec -n 2, 3 and 4); the normalised form; the candidate cap; the
// coverage target on GSM8K test; the handbook format; the second pass that
// gives each pattern its instruction; phrasing patterns with a strategist.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>

#include "metareuse/core/error.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/patterns/handbook.h"
#include "metareuse/patterns/instructions.h"
#include "metareuse/patterns/miner.h"
#include "metareuse/patterns/phrasing.h"
#include "metareuse/patterns/reflect.h"
#include "metareuse/patterns/text.h"
#include "patterns_fixtures.h"

namespace metareuse {
namespace {

using nlohmann::json;

std::vector<std::string> seed_sentences(std::string_view text) {
  std::vector<std::string> out;
  split_seed_sentences(text, [&](std::string_view s) { out.emplace_back(s); });
  return out;
}

// The reference's output, from rank 0, on every rank ("{}" when it cannot run).
json reference_on_every_rank(const std::string& corpus, int min_support, int top_k) {
  Communicator& world = test::runtime().world();
  std::string text;
  if (world.rank() == 0) text = test::run_reference(corpus, min_support, top_k).dump();
  return json::parse(world.broadcast_string(text, 0));
}

void require_same_as_reference(const MiningResult& result, const json& reference) {
  REQUIRE_FALSE(reference.contains("error"));
  CHECK(result.handbook.records == reference.at("records").get<std::uint64_t>());
  const json& expected = reference.at("patterns");
  REQUIRE(result.handbook.patterns.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("pattern " << i);
    CHECK(result.handbook.patterns[i].text == expected[i].at("text").get<std::string>());
    CHECK(result.handbook.patterns[i].support == expected[i].at("support").get<std::uint64_t>());
  }
}

MiningOptions exact_options(std::uint64_t min_support, std::size_t top_k) {
  MiningOptions options;
  options.mode = MiningMode::kExact;
  options.min_support = min_support;
  options.top_k = top_k;
  return options;
}

}  // namespace

TEST_CASE("seed sentence split: newlines, white space after . ! ?, ASCII strip only") {
  CHECK(seed_sentences("A b. C d!\tE f?\fG\vH.\r\nI") == std::vector<std::string>{"A b.", "C d!", "E f?", "G\vH.", "", "I"});
  CHECK(seed_sentences("x.y z") == std::vector<std::string>{"x.y z"});
  CHECK(seed_sentences("\u00a0a.\u00a0b") == std::vector<std::string>{"\u00a0a.\u00a0b"});
  CHECK(code_point_count("\u00e9\u4e2d\U0001F600a") == 4);
}

TEST_CASE("normalised form: lowercase, no annotations, <num>, single spaces, word-aligned search") {
  CHECK(normalize("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe  sold 1,250.50 $3.50!") ==
        "natalia sold <num>/<num> = <num> clips in may. she sold <num> $<num>!");
  CHECK(normalize("  \t ") == "");
  CHECK(normalize("Mr. X has 3.") == "mr. x has <num>.");
  CHECK(contains_word_aligned("the total number of apples.", "the total number of"));
  CHECK_FALSE(contains_word_aligned("other total number of", "the total number of"));
  CHECK_FALSE(contains_word_aligned("the total number often", "the total number of"));
  CHECK(contains_word_aligned("costs $<num> each", "$<num> each"));
  CHECK(is_content_word("apples."));
  CHECK_FALSE(is_content_word("$<num>"));
  CHECK_FALSE(is_content_word("the"));
  CHECK(behavior_name("first find the total number of") == "behavior_first_find_total_number");
}

TEST_CASE("exact mode equals the Python reference on the tricky corpus, at any rank count") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-tricky");
  const std::string corpus = (dir / "tricky.jsonl").string();
  if (world.rank() == 0) test::write_file(corpus, test::tricky_corpus());
  world.barrier();
  for (auto [min_support, top_k] : {std::pair{1, 1000}, std::pair{2, 32}, std::pair{2, 3}}) {
    json reference = reference_on_every_rank(corpus, min_support, top_k);
    if (reference.empty()) {
      METAREUSE_SKIP("python3 or ../shared/reference/seed_patterns.py not available");
      return;
    }
    INFO("min_support " << min_support << ", top_k " << top_k << ", ranks " << world.size());
    auto result = mine_patterns({corpus}, exact_options(min_support, top_k), world);
    require_same_as_reference(result, reference);
  }
}

TEST_CASE("exact mode equals the Python reference on GSM8K train, at any rank count, with colliding hashes too") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  Communicator& world = test::runtime().world();
  const std::string corpus = shared + "/datasets/gsm8k/train.jsonl";
  json reference = reference_on_every_rank(corpus, 2, 32);
  if (reference.empty()) {
    METAREUSE_SKIP("python3 not available");
    return;
  }
  auto result = mine_patterns({corpus}, exact_options(2, 32), world);
  require_same_as_reference(result, reference);
  CHECK(result.corpus.records == 7473);
  CHECK(result.handbook.exact_counts);
  CHECK_FALSE(result.recounted);
  // Every rank holds the same result.
  std::string mine = handbook_to_json(result.handbook)["patterns"].dump();
  CHECK(world.broadcast_string(mine, 0) == mine);

  // Exact mode keeps no text for a sentence seen once and takes a second
  // occurrence with the same hash to be the same sentence, checking the first
  // one later. With 12-bit hashes thousands of sentences share hashes: the
  // check must find it, and the counts and examples must not change.
  auto options = exact_options(2, 32);
  options.test_hash_mask = 0xFFF;
  auto weak = mine_patterns({corpus}, options, world);
  CHECK(weak.recounted);
  require_same_as_reference(weak, reference);
  REQUIRE(weak.handbook.patterns.size() == result.handbook.patterns.size());
  for (std::size_t i = 0; i < result.handbook.patterns.size(); ++i) {
    CHECK(weak.handbook.patterns[i].examples == result.handbook.patterns[i].examples);
  }
}

TEST_CASE("exact mode: example record ids are the same at any rank count (lines numbered after the read)") {
  // Exact mode numbers each rank's lines from its own first line and makes the
  // keys global only in round 2 (ReadOptions::number_lines_after); the reference
  // has no examples, so they are checked against one rank here, over two files.
  Communicator& world = test::runtime().world();
  auto self = make_self_communicator();
  auto dir = test::shared_temp_dir(world, "patterns-exact-examples");
  const std::string tricky = (dir / "tricky.jsonl").string();
  if (world.rank() == 0) test::write_file(tricky, test::tricky_corpus());
  world.barrier();
  const std::vector<std::string> files = {tricky, std::string(METAREUSE_SOURCE_DIR) + "/datasets/world/train.jsonl"};
  auto options = exact_options(2, 0);
  auto alone = mine_patterns(files, options, *self);
  auto shared = mine_patterns(files, options, world);
  REQUIRE(alone.handbook.patterns.size() >= 20);
  REQUIRE(shared.handbook.patterns.size() == alone.handbook.patterns.size());
  bool second_file = false;
  for (std::size_t i = 0; i < alone.handbook.patterns.size(); ++i) {
    INFO("pattern " << i << ": " << alone.handbook.patterns[i].text);
    CHECK(shared.handbook.patterns[i].text == alone.handbook.patterns[i].text);
    CHECK(shared.handbook.patterns[i].support == alone.handbook.patterns[i].support);
    CHECK(shared.handbook.patterns[i].examples == alone.handbook.patterns[i].examples);
    for (const std::string& example : alone.handbook.patterns[i].examples) {
      second_file = second_file || example.rfind("train.jsonl:", 0) == 0;
    }
  }
  CHECK(second_file);
}

TEST_CASE("exact mode: a collision found only by reading a first occurrence again is caught") {
  // Two sentences with one hash in different records, the second seen twice:
  // no record holds both, so only the check of the first occurrence finds it.
  Communicator& world = test::runtime().world();
  auto self = make_self_communicator();
  auto dir = test::shared_temp_dir(world, "patterns-collision");
  const std::string corpus = (dir / "collision.jsonl").string();
  // Under a 1-bit mask every hash is 0 or 1: find two sentences of each class.
  std::vector<std::string> zero, one;
  for (int i = 0; zero.size() < 2 || one.size() < 2; ++i) {
    std::string sentence = fmt::format("this is sentence number {} of the test.", i);
    (sentence_hash(sentence) & 1 ? one : zero).push_back(sentence);
  }
  auto line = [](const std::string& reasoning) {
    return fmt::format(R"({{"question": "q", "reasoning": "{}", "solution": "1"}})", reasoning) + "\n";
  };
  // Record 1 holds A, records 2 and 3 hold B (A and B share hash class 0);
  // C (class 1) is in records 4 and 5.
  std::string bytes = line(zero[0]) + line(zero[1]) + line(zero[1]) + line(one[0]) + line(one[0]);
  if (world.rank() == 0) test::write_file(corpus, bytes);
  world.barrier();
  auto options = exact_options(2, 0);
  auto exact = mine_patterns({corpus}, options, *self);
  REQUIRE(exact.handbook.patterns.size() == 2);
  CHECK_FALSE(exact.recounted);
  options.test_hash_mask = 1;
  // One rank sees A, B, B: only reading record 1 again shows that A is not B.
  auto weak_alone = mine_patterns({corpus}, options, *self);
  CHECK(weak_alone.recounted);
  // Split over the job's ranks the collision may be found, or A and B may meet
  // only at their owner, which merges by text: the counts are right either way.
  auto weak_shared = mine_patterns({corpus}, options, world);
  for (const auto* weak : {&weak_alone, &weak_shared}) {
    REQUIRE(weak->handbook.patterns.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      CHECK(weak->handbook.patterns[i].text == exact.handbook.patterns[i].text);
      CHECK(weak->handbook.patterns[i].support == 2);
      CHECK(weak->handbook.patterns[i].examples == exact.handbook.patterns[i].examples);
    }
  }
}

TEST_CASE("the candidate cap degrades gracefully and says so") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  Communicator& world = test::runtime().world();
  const std::string corpus = shared + "/datasets/gsm8k/train.jsonl";
  auto options = exact_options(2, 32);
  options.mode = MiningMode::kNormalized;
  auto full = mine_patterns({corpus}, options, world);
  options.max_candidates = 20000;  // far below the ~400k distinct candidates
  auto capped = mine_patterns({corpus}, options, world);
  CHECK(full.pruned_candidates == 0);
  CHECK(full.handbook.exact_counts);
  CHECK(capped.pruned_candidates > 0);
  CHECK_FALSE(capped.handbook.exact_counts);
  CHECK(capped.local_candidates <= 20000);
  // The frequent patterns survive; their supports can only be lower bounds.
  REQUIRE_FALSE(capped.handbook.patterns.empty());
  CHECK(capped.handbook.patterns[0].text == full.handbook.patterns[0].text);
  CHECK(capped.handbook.patterns[0].support <= full.handbook.patterns[0].support);
  CHECK(capped.handbook.patterns[0].support * 10 >= full.handbook.patterns[0].support * 8);
}

// The target is 50% of GSM8K test. Patterns are chosen on train
// only (greedy coverage, by the word-aligned rule that is measured here); this
// build measures 50.19% (662 / 1319) on test, 49.69% on train.
TEST_CASE("normalized mode: top 32 patterns of >= 4 words, none inside another, cover >= 50% of GSM8K test") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  Communicator& world = test::runtime().world();
  MiningOptions options;  // the defaults: normalized, top 32, >= 4 words
  auto result = mine_patterns({shared + "/datasets/gsm8k/train.jsonl"}, options, world);
  const auto& found = result.handbook.patterns;
  REQUIRE(found.size() == 32);
  for (std::size_t i = 0; i < found.size(); ++i) {
    auto words = split_words(found[i].text);
    CHECK(words.size() >= 4);
    CHECK_FALSE((words.back() == "=" || words.back() == "+" || words.back() == "-" || words.back() == "x"));
    CHECK(normalize(found[i].text) == found[i].text);
    CHECK(found[i].support >= 2);
    CHECK_FALSE(found[i].examples.empty());
    // The instruction is a whole sentence that contains the pattern, capitalised, numbers as slots.
    INFO(found[i].text << " -> " << found[i].instruction);
    CHECK(contains_word_aligned(normalize(found[i].instruction), found[i].text));
    CHECK(found[i].instruction.size() >= found[i].text.size());
    CHECK_FALSE((found[i].instruction[0] >= 'a' && found[i].instruction[0] <= 'z'));
    for (std::size_t j = 0; j < found.size(); ++j) {
      if (i != j) {
        INFO(found[i].text << " / " << found[j].text);
        CHECK_FALSE(contains_word_aligned(found[i].text, found[j].text));
      }
    }
  }
  auto coverage = holdout_coverage(found, {shared + "/datasets/gsm8k/test.jsonl"}, {}, world);
  CHECK(coverage.records == 1319);
  INFO("coverage " << coverage.covered << " / " << coverage.records);
  CHECK(coverage.share() >= 0.50);
  // Exact mode's patterns are near-duplicate problems: they cover almost nothing.
  auto exact = mine_patterns({shared + "/datasets/gsm8k/train.jsonl"}, exact_options(2, 32), world);
  auto exact_coverage = holdout_coverage(exact.handbook.patterns, {shared + "/datasets/gsm8k/test.jsonl"}, {}, world);
  CHECK(exact_coverage.share() < 0.05);
}

// Records whose reasoning normalises to one text are mined once, with their
// count as the weight. The reasoning-world corpus (datasets/world, in the
// repository) is made of few shapes with other numbers and names: grouped in
// full, in part (a cap of a few KB: the rest mined one by one and matched in a
// second read) or not at all, the handbook must be the same.
TEST_CASE("normalized mode: grouping equal normalised records changes nothing in the handbook") {
  Communicator& world = test::runtime().world();
  const std::string corpus = std::string(METAREUSE_SOURCE_DIR) + "/datasets/world/train.jsonl";
  auto mine = [&](std::size_t group_bytes, Selection selection) {
    MiningOptions options;
    options.top_k = 12;
    options.min_support = 3;
    options.selection = selection;
    options.group_bytes = group_bytes;
    return mine_patterns({corpus}, options, world);
  };
  for (auto selection : {Selection::kCoverage, Selection::kSupport}) {
    auto alone = mine(0, selection);
    REQUIRE(alone.handbook.records == 4000);
    REQUIRE(alone.handbook.patterns.size() == 12);
    for (std::size_t group_bytes : {std::size_t{3000}, std::size_t{48} << 20}) {
      INFO("group bytes " << group_bytes << ", selection " << (selection == Selection::kCoverage ? "coverage" : "support"));
      auto grouped = mine(group_bytes, selection);
      CHECK(grouped.handbook.records == alone.handbook.records);
      CHECK(grouped.global_candidates == alone.global_candidates);
      REQUIRE(grouped.handbook.patterns.size() == alone.handbook.patterns.size());
      for (std::size_t i = 0; i < alone.handbook.patterns.size(); ++i) {
        const auto& a = alone.handbook.patterns[i];
        const auto& g = grouped.handbook.patterns[i];
        INFO("pattern " << i << ": " << a.text);
        CHECK(g.text == a.text);
        CHECK(g.support == a.support);
        CHECK(g.kind == a.kind);
        CHECK(g.examples == a.examples);
      }
    }
  }
}

// At several ranks, normalized mode sends round 2 only the candidates whose
// global support reaches the pool's last place (ties included). Pools of 10
// and 40 on the reasoning world, whose candidates share few support values;
// the handbook must be the one a single rank mines alone (a self
// communicator reads the whole file).
TEST_CASE("normalized mode: the pool cut after round 1 gives the handbook of one rank") {
  Communicator& world = test::runtime().world();
  auto self = make_self_communicator();
  const std::string corpus = std::string(METAREUSE_SOURCE_DIR) + "/datasets/world/train.jsonl";
  for (std::size_t pool_size : {10, 40}) {
  for (auto selection : {Selection::kCoverage, Selection::kSupport}) {
    MiningOptions options;
    options.top_k = 6;
    options.pool_size = pool_size;
    options.selection = selection;
    auto alone = mine_patterns({corpus}, options, *self);
    auto shared = mine_patterns({corpus}, options, world);
    // (absorption and overlap leave 3 of a pool of 10 and 6 of 40)
    REQUIRE(alone.handbook.patterns.size() >= 3);
    CHECK(shared.qualified == alone.qualified);
    CHECK(shared.global_candidates == alone.global_candidates);
    REQUIRE(shared.handbook.patterns.size() == alone.handbook.patterns.size());
    for (std::size_t i = 0; i < alone.handbook.patterns.size(); ++i) {
      INFO("pattern " << i << ": " << alone.handbook.patterns[i].text);
      CHECK(shared.handbook.patterns[i].text == alone.handbook.patterns[i].text);
      CHECK(shared.handbook.patterns[i].support == alone.handbook.patterns[i].support);
      CHECK(shared.handbook.patterns[i].examples == alone.handbook.patterns[i].examples);
    }
  }
  }
}

// "$<num> per kilo today" and "<num> per kilo today" are one candidate: the
// shorter form is found word-aligned in both, so it has the support of both.
TEST_CASE("normalized mode: a phrase without its leading '$' counts the records of both forms") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-leading");
  std::string corpus = (dir / "corpus.jsonl").string();
  if (world.rank() == 0) {
    std::ofstream out(corpus);
    for (int i = 0; i < 3; ++i) {
      out << json({{"question", "q"}, {"reasoning", "We pay $" + std::to_string(i + 2) + " per kilo today."},
                   {"solution", "1"}}).dump() << "\n";
      out << json({{"question", "q"}, {"reasoning", "We pay " + std::to_string(i + 2) + " per kilo today."},
                   {"solution", "1"}}).dump() << "\n";
    }
  }
  world.barrier();
  for (auto selection : {Selection::kCoverage, Selection::kSupport}) {
    MiningOptions options;
    options.top_k = 1;
    options.selection = selection;
    auto result = mine_patterns({corpus}, options, world);
    REQUIRE(result.handbook.patterns.size() == 1);
    CHECK(result.handbook.patterns[0].text == "<num> per kilo today");
    CHECK(result.handbook.patterns[0].support == 6);
    CHECK(holdout_coverage(result.handbook.patterns, {corpus}, {}, world).covered == 6);
  }
}

TEST_CASE("handbook: versioned JSON round trip, foreign files refused, behavior handbooks imported") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-handbook");
  Handbook handbook;
  handbook.records = 12;
  handbook.mode = "normalized";
  handbook.patterns.push_back({"the total number of", 7, "phrase", {"a.jsonl:3"}, "behavior_total_number", ""});
  if (world.rank() == 0) {
    write_handbook(handbook, (dir / "h.json").string());
    test::write_file(dir / "behaviors.json",
                     R"({"behavior_zeta": "Check units.", "behavior_alpha": "Write the equation first."})");
    test::write_file(dir / "bad_behaviors.json", R"({"behavior_x": 3})");
    test::write_file(dir / "v9.json", R"({"format": "metareuse.handbook", "version": 9, "records": 1, "patterns": []})");
  }
  world.barrier();
  auto loaded = read_handbook((dir / "h.json").string());
  CHECK(loaded.records == 12);
  REQUIRE(loaded.patterns.size() == 1);
  CHECK(loaded.patterns[0].text == "the total number of");
  CHECK(loaded.patterns[0].support == 7);
  CHECK(loaded.patterns[0].kind == "phrase");
  CHECK(loaded.patterns[0].examples == std::vector<std::string>{"a.jsonl:3"});
  CHECK(loaded.patterns[0].name == "behavior_total_number");
  CHECK(loaded.patterns[0].instruction.empty());  // as written
  // A version 1 handbook (name under "behavior", no instruction) still reads; the instruction comes from the text.
  auto old = handbook_from_json(nlohmann::json::parse(R"({"format": "metareuse.handbook", "version": 1,
      "records": 3, "patterns": [{"text": "a total of <num>", "support": 2, "behavior": "behavior_total"}]})"), "v1.json");
  CHECK(old.patterns[0].name == "behavior_total");
  CHECK(old.patterns[0].instruction == "A total of <num>");
  CHECK_THROWS_WITH(read_handbook((dir / "v9.json").string()), Catch::Contains("version 9"));
  CHECK_THROWS_WITH(read_handbook((dir / "behaviors.json").string()), Catch::Contains("--import"));

  auto imported = import_behavior_handbook((dir / "behaviors.json").string());
  REQUIRE(imported.patterns.size() == 2);
  CHECK(imported.patterns[0].name == "behavior_zeta");  // file order
  CHECK(imported.patterns[0].instruction == "Check units.");
  CHECK(imported.patterns[0].text == "Check units.");
  CHECK(imported.patterns[1].kind == "imported");
  CHECK_THROWS_WITH(import_behavior_handbook((dir / "bad_behaviors.json").string()),
                    Catch::Contains("behavior_x"));
}

// ---------------------------------------------------------------- reflect ----

TEST_CASE("reflect: behavior lines parse, malformed lines are counted") {
  // Replies written by hand in the shapes small instruct models give.
  auto parsed = parse_reflection(
      "Here are the behaviors:\n"
      "1. **Unit rate**: Divide the total by the count to get one.\n"
      "- behavior_check_answer: Substitute the answer back into the question.\n"
      "  * `Work-backwards`: Start from the final amount and undo each step.\n"
      "\n"
      "behavior_too_short: Add.\n"
      ": no name here at all\n"
      "behavior with a name that is far too long to be a name: It has words enough though.\n"
      "just a sentence without any colon\n"
      "behavior_x$y: Weird characters are not a name.\n");
  REQUIRE(parsed.behaviors.size() == 3);
  CHECK(parsed.behaviors[0].name == "behavior_unit_rate");
  CHECK(parsed.behaviors[0].instruction == "Divide the total by the count to get one.");
  CHECK(parsed.behaviors[1].name == "behavior_check_answer");
  CHECK(parsed.behaviors[2].name == "behavior_work_backwards");
  // "Here are the behaviors:" (no instruction), too short, no name, too long, no colon, bad characters.
  CHECK(parsed.malformed == 6);
  CHECK(parse_reflection("").behaviors.empty());
  // The key ignores case, numbers, spacing and the final period.
  CHECK(behavior_key({"behavior_unit_rate", "Divide 12 by  3."}) ==
        behavior_key({"unit_rate", "divide 7 by 2"}));
  CHECK(behavior_key({"behavior_unit_rate", "Divide by 3."}) !=
        behavior_key({"behavior_other", "Divide by 3."}));
}

TEST_CASE("reflect: the handbook is the same at any rank count, support counted per record") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-reflect");
  if (world.rank() == 0) {
    std::string corpus;
    for (int i = 0; i < 9; ++i) {
      const std::string topic = i % 3 == 0 ? "apples" : (i % 3 == 1 ? "trains" : "coins");
      corpus += fmt::format(R"({{"question": "Q{} about {}", "reasoning": "Step {} with {}.", "solution": "{}"}})", i,
                            topic, i, topic, i) + "\n";
      if (i == 4) corpus += "not json\n";
    }
    test::write_file(dir / "corpus.jsonl", corpus);
    test::write_file(dir / "bad_prompt.txt", "Question: {question}\n");
  }
  world.barrier();
  // A stand-in strategist whose reply depends only on the prompt, as greedy decoding does.
  std::uint64_t calls = 0;
  Strategist strategist = [&calls](const std::vector<std::string>& prompts,
                                             const std::vector<std::uint64_t>& ids) {
    ++calls;
    REQUIRE(ids.size() == prompts.size());
    std::vector<std::string> replies;
    for (const std::string& prompt : prompts) {
      std::string reply = "behavior_check_answer: Substitute the answer back into the question.\n";
      if (prompt.find("apples") != std::string::npos) reply += "- **Count items**: Count the apples in 3 groups.\n";
      if (prompt.find("trains") != std::string::npos) {
        reply += "behavior_rate: Divide the distance by the time.\nbehavior_rate: Divide the distance by the time.\n";
      }
      reply += "noise line\n";
      replies.push_back(reply);
    }
    return replies;
  };
  ReflectOptions options;
  options.prompt_template = "Solve: {question}\nSolution: {reasoning}\nAnswer: {solution}\nBehaviors:";
  options.batch_size = 2;
  Handbook handbook = reflect_patterns({(dir / "corpus.jsonl").string()}, options, strategist, world).value();
  CHECK(handbook.mode == "reflect");
  CHECK(handbook.records == 9);
  REQUIRE(handbook.patterns.size() == 3);
  CHECK(handbook.patterns[0].name == "behavior_check_answer");
  CHECK(handbook.patterns[0].support == 9);
  CHECK(handbook.patterns[0].examples ==
        std::vector<std::string>{"corpus.jsonl:1", "corpus.jsonl:2", "corpus.jsonl:3"});
  // Equal support: by key, "count_items|..." before "rate|..."; a record naming a behavior twice counts once.
  CHECK(handbook.patterns[1].name == "behavior_count_items");
  CHECK(handbook.patterns[1].instruction == "Count the apples in 3 groups.");
  CHECK(handbook.patterns[1].support == 3);
  CHECK(handbook.patterns[2].name == "behavior_rate");
  CHECK(handbook.patterns[2].support == 3);
  CHECK(handbook.patterns[2].examples == std::vector<std::string>{"corpus.jsonl:2", "corpus.jsonl:5", "corpus.jsonl:9"});
  CHECK(handbook.stats["malformed_lines"] == 9);  // one noise line per reply
  CHECK(handbook.stats["bad_lines"] == 1);
  // The handbook round-trips through the file format.
  auto json_text = handbook_to_json(handbook).dump();
  auto read = handbook_from_json(nlohmann::json::parse(json_text), "h.json");
  CHECK(read.patterns[1].instruction == "Count the apples in 3 groups.");
  // min_support and top_k cut as in the other modes.
  options.min_support = 4;
  CHECK(reflect_patterns({(dir / "corpus.jsonl").string()}, options, strategist, world).value().patterns.size() == 1);
  // The shipped prompt fills every slot.
  std::ifstream shipped(std::string(METAREUSE_SOURCE_DIR) + "/configs/reflect_prompt.txt");
  REQUIRE(shipped);
  const std::string shipped_text((std::istreambuf_iterator<char>(shipped)), std::istreambuf_iterator<char>());
  Record record;
  record.question = "Q?";
  record.reasoning = "R.";
  record.solution = "S";
  const std::string filled = reflection_prompt(shipped_text, record);
  CHECK(filled.find("Problem: Q?") != std::string::npos);
  CHECK(filled.find("Solution: R.") != std::string::npos);
  CHECK(filled.find('{') == std::string::npos);
  options.prompt_template = "Question: {question}\n";
  CHECK_THROWS_WITH(reflect_patterns({(dir / "corpus.jsonl").string()}, options, strategist, world),
                    Catch::Contains("{reasoning}"));
}

TEST_CASE("reflect: records are dealt round robin, max_records keeps the first, no behavior is an error") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-reflect-share");
  if (world.rank() == 0) {
    std::string corpus;
    for (int i = 0; i < 10; ++i) {
      corpus += fmt::format(R"({{"question": "Q{}", "reasoning": "Record {} reasoning.", "solution": "{}"}})", i, i, i) +
                "\n";
    }
    test::write_file(dir / "corpus.jsonl", corpus);
    test::write_file(dir / "no_slot.txt", "Question: {question}\nAnswer: {solution}\n");
  }
  world.barrier();
  // Each prompt's record number, as this rank saw them.
  std::vector<int> seen;
  bool garbage = false;
  Strategist strategist = [&](const std::vector<std::string>& prompts, const std::vector<std::uint64_t>&) {
    std::vector<std::string> replies;
    for (const std::string& prompt : prompts) {
      const auto at = prompt.find("Record ");
      REQUIRE(at != std::string::npos);
      seen.push_back(std::stoi(prompt.substr(at + 7)));
      replies.push_back(garbage ? "I think the answer is right.\n: nothing\n"
                                : "behavior_restate: Restate what the question asks for.\n");
    }
    return replies;
  };
  ReflectOptions options;
  options.prompt_template = "{reasoning}";
  options.batch_size = 3;
  options.max_records = 7;
  Handbook handbook = reflect_patterns({(dir / "corpus.jsonl").string()}, options, strategist, world).value();
  // Record i is rank i % size's: every rank has a share of the first 7.
  std::vector<int> expected;
  for (int i = 0; i < 7; ++i) {
    if (i % world.size() == world.rank()) expected.push_back(i);
  }
  CHECK(seen == expected);
  REQUIRE(handbook.patterns.size() == 1);
  CHECK(handbook.patterns[0].support == 7);
  CHECK(handbook.records == 10);
  CHECK(handbook.stats["records_reflected"] == 7);
  CHECK(handbook.stats["replies"] == 7);
  CHECK(handbook.config["max_records"] == 7);

  // Replies with no behavior line: an error with the counts, on every rank.
  garbage = true;
  CHECK_THROWS_WITH(reflect_patterns({(dir / "corpus.jsonl").string()}, options, strategist, world),
                    Catch::Contains("0 behaviors with support >= 1") && Catch::Contains("7 replies") &&
                        Catch::Contains("0 behavior lines") && Catch::Contains("14 malformed lines"));
  // Behaviors below min_support: the same error.
  garbage = false;
  options.min_support = 8;
  CHECK_THROWS_WITH(reflect_patterns({(dir / "corpus.jsonl").string()}, options, strategist, world),
                    Catch::Contains("0 behaviors with support >= 8") && Catch::Contains("7 behavior lines (1 distinct)"));

  // The built-in prompt is configs/reflect_prompt.txt, byte for byte; a user's file is checked, naming it.
  std::ifstream shipped(std::string(METAREUSE_SOURCE_DIR) + "/configs/reflect_prompt.txt", std::ios::binary);
  REQUIRE(shipped);
  const std::string shipped_text((std::istreambuf_iterator<char>(shipped)), std::istreambuf_iterator<char>());
  CHECK(default_reflection_prompt() == shipped_text);
  CHECK(load_reflection_prompt("") == shipped_text);
  CHECK(load_reflection_prompt(std::string(METAREUSE_SOURCE_DIR) + "/configs/reflect_prompt.txt") ==
        shipped_text);
  const std::string no_slot = (dir / "no_slot.txt").string();
  CHECK_THROWS_WITH(load_reflection_prompt(no_slot),
                    Catch::Contains(no_slot) && Catch::Contains("no {reasoning} placeholder"));
  const std::string absent = (dir / "absent.txt").string();
  CHECK_THROWS_WITH(load_reflection_prompt(absent), Catch::Contains(absent) && Catch::Contains("cannot read"));
}

// ----------------------------------------------------------- instructions ----

TEST_CASE("full sentence: 5 words with a letter, a capital or slot first, end punctuation, a verb") {
  CHECK(is_full_sentence("A total of <num> apples were sold."));
  CHECK(is_full_sentence("<num> tables have <num> chairs each for a total of <num> chairs."));
  CHECK(is_full_sentence("$<num> is the price of one pen."));
  CHECK(is_full_sentence("Multiply the price by the number of items."));
  CHECK(is_full_sentence("Divides the total by the count evenly!"));
  CHECK(is_full_sentence("He bought <num> more apples today (in total)."));
  CHECK(is_full_sentence("So the answer is \"five apples in all.\""));
  CHECK_FALSE(is_full_sentence("A total of <num>"));                      // a fragment
  CHECK_FALSE(is_full_sentence("A total of <num> apples were sold"));     // no end punctuation
  CHECK_FALSE(is_full_sentence("<num> + <num> = <num> minutes."));        // one word with a letter
  CHECK_FALSE(is_full_sentence("He has <num> + <num> = <num>."));         // three
  CHECK_FALSE(is_full_sentence("the price of one pen is <num>."));        // no capital or slot first
  CHECK_FALSE(is_full_sentence("The price of the big red pen."));         // no verb
  CHECK_FALSE(is_full_sentence(""));
}

namespace {

// Reasonings whose sentences contain "a total of <num>" and "the cost of the"
// in known numbers of records (a sentence twice in one record counts once).
std::string instruction_corpus() {
  const std::vector<std::string> reasonings = {
      "So a total of 5 apples were sold. The cost of the pen is 2 dollars.",
      "So a total of 7 apples were sold.\nThe cost of the pen is 3 dollars.",
      "So a total of 9 apples were sold. So a total of 9 apples were sold. The cost of the cup is 1 dollars.",
      "A total of 4 pears were sold. The cost of the cup is 8 dollars.",
      "A total of 6 pears were sold.\nThe cost of the big red pen is 5 dollars.",
      "A total of 3\nThe cost of the big red pen is 6 dollars.",
      "a total of 8\nNothing else here.",
      "Step one.\nA total of 12",
      "A total of 1,000",
      "Then a total of 50 apples were sold.",
      "Xa total of 5 apples were sold. Here is nothing either.",  // "xa total": not word-aligned
  };
  std::string corpus;
  for (std::size_t i = 0; i < reasonings.size(); ++i) {
    corpus += json{{"question", fmt::format("Q{}", i)}, {"reasoning", reasonings[i]}, {"solution", "1"}}.dump() + "\n";
  }
  return corpus;
}

}  // namespace

TEST_CASE("instructions: the most frequent full sentence containing a pattern, ties by words then bytes, any rank count") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-instructions");
  if (world.rank() == 0) test::write_file(dir / "corpus.jsonl", instruction_corpus());
  world.barrier();
  const std::vector<std::string> files = {(dir / "corpus.jsonl").string()};
  const std::vector<std::string> patterns = {"a total of <num>", "the cost of the", "never seen in it"};
  SentenceCountOptions options;
  auto found = count_containing_sentences(files, patterns, options, world);
  REQUIRE(found.size() == 3);

  // Full sentences first: the fragment "a total of <num>" of 4 records comes after them all.
  CHECK(found[0].sentences == std::vector<std::string>{"so a total of <num> apples were sold.",
                                                        "a total of <num> pears were sold.",
                                                        "then a total of <num> apples were sold."});
  CHECK(found[0].records == std::vector<std::uint64_t>{3, 2, 1});
  CHECK(found[0].full == std::vector<bool>{true, true, true});
  CHECK(found[0].counted == 4);  // the three and the fragment; not "xa total of ..." (not word-aligned)
  options.keep = 4;
  auto four = count_containing_sentences(files, {patterns[0]}, options, world);
  REQUIRE(four.size() == 1);
  CHECK(four[0].sentences.back() == "a total of <num>");
  CHECK(four[0].records.back() == 4);
  CHECK_FALSE(four[0].full.back());
  options.keep = 3;
  CHECK_FALSE(found[0].sampled);
  // Two records each: fewer words first, then the bytes ("cup" before "pen").
  CHECK(found[1].sentences == std::vector<std::string>{"the cost of the cup is <num> dollars.",
                                                        "the cost of the pen is <num> dollars.",
                                                        "the cost of the big red pen is <num> dollars."});
  CHECK(found[1].records == std::vector<std::uint64_t>{2, 2, 2});
  CHECK(found[2].sentences.empty());
  CHECK(found[2].counted == 0);

  // A sample of one keeps, per pattern, the full sentence with the smallest
  // hash, with its exact record count, at any rank count.
  options.sample = 1;
  auto sampled = count_containing_sentences(files, patterns, options, world);
  const std::map<std::string, std::uint64_t> total_sentences = {
      {"so a total of <num> apples were sold.", 3},
      {"a total of <num> pears were sold.", 2},
      {"then a total of <num> apples were sold.", 1}};
  const std::map<std::string, std::uint64_t> cost_sentences = {{"the cost of the cup is <num> dollars.", 2},
                                                               {"the cost of the pen is <num> dollars.", 2},
                                                               {"the cost of the big red pen is <num> dollars.", 2}};
  int index = 0;
  for (const auto* expected : {&total_sentences, &cost_sentences}) {
    auto first = std::min_element(expected->begin(), expected->end(), [](const auto& a, const auto& b) {
      return sentence_hash(a.first) < sentence_hash(b.first);
    });
    INFO("pattern " << patterns[index]);
    const ContainingSentences& got = sampled[index++];
    CHECK(got.sentences == std::vector<std::string>{first->first});
    CHECK(got.records == std::vector<std::uint64_t>{first->second});
    CHECK(got.counted == 1);
    CHECK(got.sampled);
  }
  CHECK_FALSE(sampled[2].sampled);
}

TEST_CASE("phrasing: one reply per pattern, dealt round robin; unparsable replies keep the mined sentence") {
  Communicator& world = test::runtime().world();
  Handbook handbook;
  handbook.mode = "normalized";
  std::vector<std::vector<std::string>> sentences;
  const std::vector<std::string> topics = {"apples", "pears", "apples", "coins", "trains"};
  for (std::size_t i = 0; i < topics.size(); ++i) {
    Pattern pattern;
    pattern.text = fmt::format("pattern {} about {}", i, topics[i]);
    pattern.name = fmt::format("behavior_mined_{}", i);
    pattern.instruction = fmt::format("Mined sentence {} about {}.", i, topics[i]);
    handbook.patterns.push_back(pattern);
    sentences.push_back({fmt::format("he sold <num> {}.", topics[i]), "a second sentence."});
  }
  std::vector<std::uint64_t> asked;
  Strategist strategist = [&](const std::vector<std::string>& prompts, const std::vector<std::uint64_t>& ids) {
    REQUIRE(ids.size() == prompts.size());
    std::vector<std::string> replies;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      asked.push_back(ids[i]);
      // The prompt holds the pattern and its sentences as instructions.
      CHECK_THAT(prompts[i], Catch::Contains(handbook.patterns[ids[i]].text) &&
                                 Catch::Contains("- He sold <num> " + topics[ids[i]] + ".\n- A second sentence."));
      if (prompts[i].find("apples") != std::string::npos) {
        replies.push_back("Sure.\nbehavior_count_apples: Count the apples in each basket first.\n");
      } else if (prompts[i].find("pears") != std::string::npos) {
        replies.push_back("1. **Unit rate**: Divide the total by the count.");
      } else {
        replies.push_back(ids[i] == 3 ? "I am not sure what to say." : "behavior_x: Too short.");
      }
    }
    return replies;
  };
  PhrasingOptions options;
  options.prompt_template = "Pattern: {pattern}\nSentences:\n{sentences}\nBehavior:";
  options.batch_size = 2;
  PhrasingCounts counts = phrase_patterns(handbook, sentences, options, strategist, world);

  // Pattern i was asked about once, on rank i % size.
  std::vector<std::uint64_t> mine;
  for (std::uint64_t i = static_cast<std::uint64_t>(world.rank()); i < topics.size(); i += world.size()) {
    mine.push_back(i);
  }
  CHECK(asked == mine);
  CHECK(counts.replies == 5);
  CHECK(counts.phrased == 3);
  CHECK(counts.kept_mined == 2);
  CHECK(handbook.stats["phrasing"] == json{{"replies", 5}, {"phrased", 3}, {"kept_mined", 2}});
  // Every rank has every pattern's result; a name given twice gets a suffix.
  CHECK(handbook.patterns[0].name == "behavior_count_apples");
  CHECK(handbook.patterns[0].instruction == "Count the apples in each basket first.");
  CHECK(handbook.patterns[1].name == "behavior_unit_rate");
  CHECK(handbook.patterns[1].instruction == "Divide the total by the count.");
  CHECK(handbook.patterns[2].name == "behavior_count_apples_2");
  CHECK(handbook.patterns[3].name == "behavior_mined_3");  // no behavior line: the mined one stays
  CHECK(handbook.patterns[3].instruction == "Mined sentence 3 about coins.");
  CHECK(handbook.patterns[4].name == "behavior_mined_4");  // an instruction of 2 words is no behavior
  CHECK(handbook.patterns[4].instruction == "Mined sentence 4 about trains.");
  CHECK(handbook.patterns[4].text == "pattern 4 about trains");

  // The shipped prompt fills both slots.
  const std::string filled = phrasing_prompt(default_phrasing_prompt(), handbook.patterns[0], sentences[0]);
  CHECK_THAT(filled, Catch::Contains("\"pattern 0 about apples\"") && Catch::Contains("- He sold <num> apples."));
  CHECK(filled.find("{") == std::string::npos);
  CHECK(load_phrasing_prompt("") == default_phrasing_prompt());
  CHECK_THROWS_WITH(load_phrasing_prompt("/nonexistent/phrase.txt"), Catch::Contains("/nonexistent/phrase.txt"));
}

TEST_CASE("reflect: replies are logged, a stopped run goes on from them, a failing batch is recorded") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "patterns-reflect-resume");
  const std::string corpus = (dir / "corpus.jsonl").string();
  if (world.rank() == 0) {
    std::string lines;
    for (int i = 0; i < 10; ++i) {
      lines += fmt::format(R"({{"question": "Q{}", "reasoning": "Record {} reasoning.", "solution": "{}"}})", i, i, i) +
               "\n";
    }
    test::write_file(corpus, lines);
  }
  world.barrier();
  // Record i's reply names behavior_i % 3, so every record matters to the handbook.
  std::vector<int> seen;  // the records this rank prompted, across runs
  int fail_record = -1;   // the strategist throws on the batch holding it
  int signal_after = -1;  // raise SIGUSR1 after prompting this record
  Strategist strategist = [&](const std::vector<std::string>& prompts, const std::vector<std::uint64_t>&) {
    std::vector<std::string> replies;
    bool fail = false, stop = false;
    for (const std::string& prompt : prompts) {
      const int record = std::stoi(prompt.substr(prompt.find("Record ") + 7));
      seen.push_back(record);
      fail = fail || record == fail_record;
      stop = stop || record == signal_after;
      replies.push_back(fmt::format("behavior_move_{}: Take move number {} on every step.\n", record % 3, record % 3));
    }
    if (stop) std::raise(SIGUSR1);
    if (fail) throw Error("out of memory (test)");
    return replies;
  };
  ReflectOptions options;
  options.prompt_template = "{reasoning}";
  options.batch_size = 2;
  options.strategist = {{"model", "test"}};
  const Handbook whole = reflect_patterns({corpus}, options, strategist, world).value();  // no log
  const std::size_t round = static_cast<std::size_t>(world.size()) * 2;

  options.replies = (dir / "handbook.replies.jsonl").string();
  options.time_limit = 1e-9;  // passed before the second round
  seen.clear();
  CHECK_FALSE(reflect_patterns({corpus}, options, strategist, world).has_value());
  if (world.rank() == 0) {
    std::ifstream log(options.replies);
    std::string line;
    std::size_t lines = 0;
    while (std::getline(log, line)) ++lines;
    CHECK(lines == 1 + std::min<std::size_t>(round, 10));  // the header and the first round
    std::ofstream(options.replies, std::ios::app) << R"({"order": 9, "rec)";  // a part line, as a kill leaves
  }
  world.barrier();
  // Gone on from the log: only the records without a reply are prompted,
  // and the handbook is the uninterrupted one.
  options.time_limit = 0;
  std::optional<Handbook> resumed = reflect_patterns({corpus}, options, strategist, world);
  REQUIRE(resumed.has_value());
  CHECK(handbook_to_json(*resumed)["patterns"] == handbook_to_json(whole)["patterns"]);
  CHECK(resumed->stats["replies_read_back"] == std::min<std::size_t>(round, 10));
  std::vector<int> all_seen = seen;
  std::sort(all_seen.begin(), all_seen.end());
  CHECK(std::adjacent_find(all_seen.begin(), all_seen.end()) == all_seen.end());  // no record prompted twice
  std::uint64_t prompted = all_seen.size();
  std::vector<std::uint64_t> total = {prompted};
  world.allreduce(total, ReduceOp::kSum);
  CHECK(total[0] == 10);

  // Everything read back: no prompt, and other merge options reuse the replies.
  seen.clear();
  options.min_support = 4;
  std::optional<Handbook> again = reflect_patterns({corpus}, options, strategist, world);
  CHECK(seen.empty());
  REQUIRE(again.has_value());
  CHECK(again->stats["replies_read_back"] == 10);
  CHECK(again->patterns.size() == 1);  // only behavior_move_0 (records 0, 3, 6, 9) has support 4
  options.min_support = 1;

  // Another strategist: its replies are not reused.
  options.strategist = {{"model", "another"}};
  seen.clear();
  REQUIRE(reflect_patterns({corpus}, options, strategist, world).has_value());
  total = {seen.size()};
  world.allreduce(total, ReduceOp::kSum);
  CHECK(total[0] == 10);

  // A signal between rounds stops every rank; the next run finishes.
  options.strategist = {{"model", "signalled"}};
  signal_after = 0;
  CHECK_FALSE(reflect_patterns({corpus}, options, strategist, world).has_value());
  signal_after = -1;
  REQUIRE(reflect_patterns({corpus}, options, strategist, world).has_value());

  // A batch whose strategist throws: its records are failed, the rest count.
  options.strategist = {{"model", "failing"}};
  fail_record = 4;
  std::optional<Handbook> failing = reflect_patterns({corpus}, options, strategist, world);
  REQUIRE(failing.has_value());
  // Record 4's batch on its rank: 2 records (4 and the next one dealt to that rank), or 1 at the end.
  const auto failed = failing->stats["failed"].get<std::uint64_t>();
  CHECK(failed >= 1);
  CHECK(failed <= 2);
  CHECK(failing->stats["replies"].get<std::uint64_t>() == 10 - failed);
  if (world.rank() == 0) {
    std::ifstream log(options.replies);
    std::string line;
    std::size_t errors = 0;
    while (std::getline(log, line)) errors += line.find("out of memory (test)") != std::string::npos;
    CHECK(errors == failed);
  }
}

}  // namespace metareuse
