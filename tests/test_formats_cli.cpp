// Users' data as it is, from the outside: `metareuse run` trains and
// evaluates on a corpus file in each record format (corpus.h), written here
// from the bundled sample corpus; corpus.fields holds for eval too; a record
// that fits no format and a JSON array file are each one line naming the file.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>

#include "cli_runner.h"
#include "test_support.h"

using metareuse::test::count_of;
using metareuse::test::run_metareuse;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The bundled seed records ({"question", "reasoning", "solution"}), rewritten one by one.
void write_corpus(const fs::path& path, const std::function<json(const json&)>& rewrite) {
  std::ifstream in(fs::path(METAREUSE_SOURCE_DIR) / "datasets" / "sample_reasoning.jsonl");
  std::ofstream out(path);
  std::string line;
  int written = 0;
  while (std::getline(in, line) && written < 120) {
    out << rewrite(json::parse(line)).dump() << "\n";
    ++written;
  }
}

std::string answer_text(const json& seed) {
  return seed.at("reasoning").get<std::string>() + "\n#### " + seed.at("solution").get<std::string>();
}

// A short run: the demo config on `corpus`, evaluated on the same file.
metareuse::test::CommandResult run_on(const fs::path& corpus, const fs::path& out, const std::string& extra = "") {
  return run_metareuse("run --config configs/demo.json --set run.out_dir=" + out.string() +
                       " --set 'corpus.files=[\"" + corpus.string() + "\"]' --set eval.questions=" + corpus.string() +
                       " --set train.max_steps=2 --set train.warmup_steps=1 --set eval.limit=2"
                       " --set eval.max_new_tokens=8 " + extra);
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

}  // namespace

TEST_CASE("each record format trains and evaluates end to end, with its answer rule in eval.json", "[e2e]") {
  struct Format {
    const char* name;
    std::function<json(const json&)> rewrite;
    const char* rule;  // eval.json's answer_rule.strict
    std::string extra;
  };
  const std::vector<Format> formats = {
      {"messages",
       [](const json& seed) {
         return json{{"messages", json::array({{{"role", "system"}, {"content", "Answer briefly."}},
                                              {{"role", "user"}, {"content", seed.at("question")}},
                                              {{"role", "assistant"}, {"content", answer_text(seed)}}})}};
       },
       "####", ""},
      {"prompt-completion",
       [](const json& seed) { return json{{"prompt", seed.at("question")}, {"completion", seed.at("reasoning")}}; },
       "last number", ""},
      {"gsm8k", [](const json& seed) { return json{{"question", seed.at("question")}, {"answer", answer_text(seed)}}; },
       "####", ""},
      {"math",
       [](const json& seed) {
         return json{{"problem", seed.at("question")},
                     {"solution", seed.at("reasoning").get<std::string>() + " The answer is $\\boxed{" +
                                      seed.at("solution").get<std::string>() + "}$."}};
       },
       "\\boxed{}", ""},
      {"fields", [](const json& seed) { return json{{"input", seed.at("question")}, {"output", answer_text(seed)}}; },
       "####", "--set 'corpus.fields={\"question\": \"input\", \"answer\": \"output\"}'"},
  };
  for (const Format& format : formats) {
    DYNAMIC_SECTION(format.name) {
      const fs::path dir = metareuse::test::temp_dir(std::string("formats-") + format.name);
      const fs::path corpus = dir / "corpus.jsonl";
      write_corpus(corpus, format.rewrite);
      auto result = run_on(corpus, dir / "run", format.extra);
      INFO(result.output);
      REQUIRE(result.status == 0);
      CHECK_THAT(result.output, Contains("120 records, 0 bad lines"));
      const json eval = read_json(dir / "run" / "eval" / "eval.json");
      CHECK(eval.at("questions") == 2);
      CHECK(eval.at("bad_records") == 0);
      CHECK(eval.at("answer_rule").at("strict") == format.rule);
      CHECK(eval.at("answer_rule").at("flexible") == "last number");
      const json& summary = eval.at("models").at("model").at("summary");
      CHECK(summary.contains("accuracy"));  // the key earlier readers know
      CHECK(summary.contains("accuracy_flexible"));
      CHECK_THAT(result.output, Contains("flexible"));  // the terminal table
      std::ifstream report(dir / "run" / "report.html");
      const std::string page((std::istreambuf_iterator<char>(report)), std::istreambuf_iterator<char>());
      CHECK_THAT(page, Contains("accuracy, flexible"));
      fs::remove_all(dir);
    }
  }
}

TEST_CASE("corpus.fields is honoured by eval alone: the same file, the same names", "[e2e]") {
  const fs::path dir = metareuse::test::temp_dir("formats-eval-fields");
  const fs::path corpus = dir / "mapped.jsonl";
  write_corpus(corpus, [](const json& seed) {
    return json{{"input", seed.at("question")}, {"output", answer_text(seed)}};
  });
  const std::string fields = " --set 'corpus.fields={\"question\": \"input\", \"answer\": \"output\"}'";
  auto trained = run_on(corpus, dir / "run", fields);
  INFO(trained.output);
  REQUIRE(trained.status == 0);
  // eval on its own, with and without the mapping.
  const std::string eval = "eval --config configs/demo.json --set run.out_dir=" + (dir / "run").string() +
                           " --questions " + corpus.string() + " --limit 3 --max-new-tokens 8 --out ";
  auto mapped = run_metareuse(eval + (dir / "mapped").string() + fields);
  INFO(mapped.output);
  REQUIRE(mapped.status == 0);
  const json file = read_json(dir / "mapped" / "eval.json");
  CHECK(file.at("questions") == 3);
  CHECK(file.at("bad_records") == 0);
  auto unmapped = run_metareuse(eval + (dir / "unmapped").string());
  CHECK(unmapped.status == 1);
  CHECK_THAT(unmapped.output, Contains("mapped.jsonl:1: skipped: fits no record format") &&
                                  Contains("no usable questions"));
  fs::remove_all(dir);
}

TEST_CASE("a record that fits no format, and a JSON array file, are each one line naming the file", "[e2e]") {
  const fs::path dir = metareuse::test::temp_dir("formats-wrong");
  const fs::path wrong = dir / "chat.jsonl";
  {
    std::ofstream out(wrong);
    out << R"({"messages": [{"role": "user", "content": "What is 2+3?"}]})" << "\n";
  }
  auto result = run_metareuse("patterns --set run.out_dir=" + (dir / "run").string() + " --set 'corpus.files=[\"" +
                              wrong.string() + "\"]'");
  INFO(result.output);
  CHECK(result.status == 1);
  CHECK_THAT(result.output, Contains(wrong.string() + ":1: looks like messages, but has no assistant turn"));

  const fs::path array = dir / "data.json";
  {
    std::ofstream out(array);
    out << "[\n  {\"question\": \"q1\", \"answer\": \"#### 1\"},\n  {\"question\": \"q2\", \"answer\": \"#### 2\"}\n]\n";
  }
  const std::string one_line = array.string() +
                               ": this is a JSON array; JSON Lines expected (one JSON object per line): convert it "
                               "with `jq -c '.[]' " + array.string() + " > " + (dir / "data.jsonl").string() + "`";
  auto refused = run_metareuse("patterns --set run.out_dir=" + (dir / "run").string() + " --set 'corpus.files=[\"" +
                               array.string() + "\"]'");
  INFO(refused.output);
  CHECK(refused.status == 1);
  CHECK(count_of(refused.output, one_line) == 1);
  CHECK_THAT(refused.output, !Contains("malformed JSON"));
  fs::remove_all(dir);
}
