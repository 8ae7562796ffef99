// The corpus stage: byte ranges cut at line starts, and every class of bad
// input reported as `file:line: reason`, skipped, counted, with the good
// records still read, at 1 to 4 ranks (this binary runs under mpiexec too).
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "metareuse/core/error.h"
#include "metareuse/corpus/corpus.h"
#include "metareuse/distributed/runtime.h"
#include "patterns_fixtures.h"

namespace metareuse {
namespace {

struct ReadResult {
  CorpusStats stats;                    // global
  std::vector<std::string> reports;     // every rank's, sorted
  std::vector<std::string> reasonings;  // every rank's, in key order
  std::vector<RecordKey> keys;
};

ReadResult read_all(const std::vector<std::string>& files, ReadOptions options = {}) {
  Communicator& world = test::runtime().world();
  ReadResult result;
  std::vector<std::pair<RecordKey, std::string>> local;
  CorpusStats stats = read_corpus(files, options, world, [&](const Record& record) {
    local.emplace_back(record.key, std::string(record.reasoning) + "|" + std::string(record.solution));
  });
  result.stats = reduce_stats(stats, world);
  // Gather reports and records to every rank as one '\0'-separated string.
  auto gather = [&](const std::vector<std::string>& items) {
    std::string joined;
    for (const auto& item : items) joined += item + '\0';
    std::vector<char> bytes(joined.begin(), joined.end());
    std::vector<char> all = world.allgatherv(bytes);
    std::vector<std::string> out;
    std::string current;
    for (char c : all) {
      if (c == '\0') {
        out.push_back(current);
        current.clear();
      } else {
        current.push_back(c);
      }
    }
    return out;
  };
  result.reports = gather(stats.reports);
  std::sort(result.reports.begin(), result.reports.end());
  std::vector<std::string> records;
  std::vector<std::uint64_t> keys;
  for (auto& [key, text] : local) {
    records.push_back(text);
    keys.push_back(stats.global_key(key));  // the identity unless options.number_lines_after
  }
  result.reasonings = gather(records);
  result.keys = world.allgatherv(keys);
  return result;
}

std::string good(int i) {
  return fmt::format(R"({{"question": "q{}", "reasoning": "step {}.", "solution": "{}"}})", i, i, i);
}

}  // namespace

TEST_CASE("every line is read by exactly one rank, in order, for any cut") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-ranges");
  // Lines of very different lengths so that cuts land everywhere.
  std::string bytes;
  for (int i = 0; i < 57; ++i) {
    bytes += fmt::format(R"({{"question": "q", "reasoning": "{}", "solution": "{}"}})", std::string(i * 7 % 50, 'x'), i);
    bytes += '\n';
  }
  if (world.rank() == 0) test::write_file(dir / "ranges.jsonl", bytes);
  world.barrier();
  ReadOptions options;
  options.number_lines_after = GENERATE(false, true);  // lines counted before the read, or numbered after it
  INFO("number_lines_after " << options.number_lines_after);
  ReadResult result = read_all({(dir / "ranges.jsonl").string()}, options);
  REQUIRE(result.stats.records == 57);
  REQUIRE(result.stats.bad_lines == 0);
  REQUIRE(result.keys.size() == 57);
  for (std::size_t i = 0; i < result.keys.size(); ++i) {
    CHECK(record_key_line(result.keys[i]) == i + 1);  // gathered in rank order = line order
    CHECK(result.reasonings[i] == std::string(i * 7 % 50, 'x') + "|" + std::to_string(i));
  }
  // The ranges tile the file for every rank count, whatever this job's size.
  for (int ranks = 1; ranks <= 9; ++ranks) {
    std::uint64_t previous_end = 0;
    for (int r = 0; r < ranks; ++r) {
      LineRange range = rank_line_range(bytes, r, ranks);
      CHECK(range.begin == previous_end);
      CHECK((range.begin == 0 || bytes[range.begin - 1] == '\n'));
      previous_end = range.end;
    }
    CHECK(previous_end == bytes.size());
  }
}

TEST_CASE("bad input: each case is reported as file:line: reason and skipped, good records count") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-bad");
  std::string deep = std::string(200, '[') + std::string(200, ']');
  std::string huge_reasoning(6 * 1024 * 1024, 'a');  // a line of several MB
  const std::string path = (dir / "bad.jsonl").string();
  const std::string nul_prefix = R"({"question": "q", "reasoning": "nul )";
  std::vector<std::string> lines = {
      good(1),                                                               // 1
      R"({"question": "q", "reasoning": "unterminated)",                     // 2 malformed JSON
      R"([1, 2, 3])",                                                        // 3 not an object
      R"({"question": "q", "solution": "1"})",                               // 4 missing reasoning (fits no format)
      R"({"question": "q", "reasoning": 42, "solution": "1"})",              // 5 non-string field
      "{\"question\": \"q\", \"reasoning\": \"bad \xC3\x28 byte\", \"solution\": \"1\"}",  // 6 invalid UTF-8
      nul_prefix + '\0' + R"( here", "solution": "1"})",                  // 7 NUL byte
      "\xEF\xBB\xBF" + good(8),                                              // 8 BOM inside the file
      good(9) + "\r",                                                        // 9 CRLF: good
      "",                                                                    // 10 blank
      " \t \f ",                                                             // 11 whitespace only
      deep,                                                                  // 12 nested too deeply
      R"({"question": "q", "reasoning": ")" + huge_reasoning + R"(", "solution": "13"})",  // 13 several MB: good
      R"({"question": "q", "reasoning": null, "solution": "1"})",            // 14 null field
      R"("just a string")",                                                  // 15 not an object
      R"({"question": "q", "answer": "Half is 2.\n#### 2"})",                // 16 GSM8K: good
      R"({"question": "q", "answer": "Half of it."})",                       // 17 an answer with no final answer
      R"({"question": "q", "answer": "Half is 2.\n####  "})",                // 18 GSM8K, nothing after "####"
      good(19),                                                              // 19 last line, no newline
  };
  std::string bytes = "\xEF\xBB\xBF";  // a BOM at the start of the file is skipped, not an error
  for (std::size_t i = 0; i < lines.size(); ++i) bytes += lines[i] + (i + 1 < lines.size() ? "\n" : "");
  if (world.rank() == 0) test::write_file(path, bytes);
  world.barrier();

  ReadOptions options;
  options.number_lines_after = GENERATE(false, true);  // same reports and line numbers either way
  INFO("number_lines_after " << options.number_lines_after);
  ReadResult result = read_all({path}, options);
  CHECK(result.stats.records == 5);  // lines 1 (after the file BOM), 9, 13, 16, 19
  CHECK(result.stats.blank_lines == 2);
  CHECK(result.stats.bad_lines == 12);
  auto reason = [&](BadReason r) { return result.stats.bad_by_reason[static_cast<int>(r)]; };
  CHECK(reason(BadReason::kMalformedJson) == 1);
  CHECK(reason(BadReason::kNotObject) == 2);
  CHECK(reason(BadReason::kMissingField) == 1);
  CHECK(reason(BadReason::kNotString) == 2);
  CHECK(reason(BadReason::kInvalidUtf8) == 1);
  CHECK(reason(BadReason::kNulByte) == 1);
  CHECK(reason(BadReason::kByteOrderMark) == 1);
  CHECK(reason(BadReason::kTooDeep) == 1);
  CHECK(reason(BadReason::kNoFinalAnswer) == 2);  // bad, as eval's question reader finds them: not an empty solution

  std::vector<std::string> expected = {
      path + ":2: malformed JSON",
      path + ":3: the JSON value is an array, not an object",
      path + ":4: looks like seed or question/answer (has \"question\"), but has neither \"reasoning\" nor \"answer\" "
             "beside \"solution\"",
      path + ":5: field \"reasoning\" is a number, not a string",
      path + ":6: invalid UTF-8",
      path + ":7: NUL byte at column " + std::to_string(nul_prefix.size() + 1),
      path + ":8: UTF-8 byte order mark inside the file",
      path + ":12: JSON nested deeper than 64 levels",
      path + ":14: field \"reasoning\" is null, not a string",
      path + ":15: the JSON value is a string, not an object",
      path + ":17: field \"answer\" states no final answer (no \"####\", \\boxed{} or number)",
      path + ":18: field \"answer\" has no \"#### <final answer>\"",
  };
  REQUIRE(result.reports.size() == expected.size());
  for (const auto& want : expected) {
    bool found = std::any_of(result.reports.begin(), result.reports.end(),
                             [&](const std::string& report) { return report.rfind(want, 0) == 0; });
    INFO("expected a report starting with: " << want);
    CHECK(found);
  }
  // The good records, with their line numbers, whatever the rank count.
  std::vector<std::uint64_t> lines_read;
  for (auto key : result.keys) lines_read.push_back(record_key_line(key));
  CHECK(lines_read == std::vector<std::uint64_t>{1, 9, 13, 16, 19});
  CHECK(result.reasonings[0] == "step 1.|1");
  CHECK(result.reasonings[1] == "step 9.|9");
  CHECK(result.reasonings[2].size() == huge_reasoning.size() + 3);
  CHECK(result.reasonings[3] == "Half is 2.\n|2");
  CHECK(result.reasonings[4] == "step 19.|19");
}

TEST_CASE("an empty file has no records and no error, several files and globs keep their order") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-files");
  if (world.rank() == 0) {
    test::write_file(dir / "empty.jsonl", "");
    test::write_file(dir / "b_part.jsonl", good(2) + "\n" + good(3) + "\n");
    test::write_file(dir / "a_part.jsonl", good(1) + "\n");
  }
  world.barrier();
  ReadResult empty = read_all({(dir / "empty.jsonl").string()});
  CHECK(empty.stats.records == 0);
  CHECK(empty.stats.bad_lines == 0);

  auto files = expand_corpus_files({(dir / "empty.jsonl").string(), (dir / "*_part.jsonl").string()});
  REQUIRE(files.size() == 3);
  CHECK(files[1] == (dir / "a_part.jsonl").string());
  ReadOptions options;
  options.number_lines_after = GENERATE(false, true);
  INFO("number_lines_after " << options.number_lines_after);
  ReadResult all = read_all(files, options);
  CHECK(all.stats.records == 3);
  REQUIRE(all.keys.size() == 3);
  CHECK(record_key_file(all.keys[0]) == 1);
  CHECK(record_key_file(all.keys[2]) == 2);
  CHECK(record_key_name(all.keys[2], files) == "b_part.jsonl:2");
}

TEST_CASE("read_lines_at reads visited records again by offset, and names the file when one changed") {
  Communicator& world = test::runtime().world();
  auto self = make_self_communicator();
  auto dir = test::shared_temp_dir(world, "corpus-lines-at");
  const std::string path = (dir / "again.jsonl").string() + std::to_string(world.rank());
  test::write_file(path, "\xEF\xBB\xBF" + good(1) + "\n\n" + good(3) + "\n" + good(4));  // BOM, blank line, no final newline
  std::vector<LineAt> lines;
  std::vector<std::string> first;
  read_corpus({path}, {}, *self, [&](const Record& record) {
    lines.push_back({record.key, record.offset});
    first.push_back(std::string(record.reasoning) + "|" + std::string(record.solution));
  });
  REQUIRE(lines.size() == 3);
  std::reverse(lines.begin(), lines.end());  // any order in, file order out
  std::vector<std::string> again;
  std::vector<RecordKey> keys;
  read_lines_at({path}, lines, {}, [&](const Record& record) {
    again.push_back(std::string(record.reasoning) + "|" + std::string(record.solution));
    keys.push_back(record.key);
  });
  CHECK(again == first);
  CHECK(keys == std::vector<RecordKey>{lines[2].key, lines[1].key, lines[0].key});
  test::write_file(path, std::string(lines[0].offset, ' ') + "{not json");
  CHECK_THROWS_WITH(read_lines_at({path}, {lines[0]}, {}, [](const Record&) {}),
                    Catch::Contains(path) && Catch::Contains("changed"));
}

TEST_CASE("a missing file or an empty glob is an error naming it") {
  auto dir = test::shared_temp_dir(test::runtime().world(), "corpus-missing");
  std::string missing = (dir / "nope.jsonl").string();
  CHECK_THROWS_WITH(expand_corpus_files({missing}), Catch::Contains(missing) && Catch::Contains("not found"));
  CHECK_THROWS_WITH(expand_corpus_files({(dir / "*.none").string()}), Catch::Contains("matches no file"));
}

TEST_CASE("mapped field names: AQuA-style rationale as the reasoning") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-fields");
  if (world.rank() == 0) {
    test::write_file(dir / "aqua.jsonl", R"({"question": "q", "rationale": "Because.", "correct": "A"})" "\n");
  }
  world.barrier();
  ReadOptions options;
  options.fields.reasoning = "rationale";
  options.fields.solution = "correct";
  ReadResult result = read_all({(dir / "aqua.jsonl").string()}, options);
  CHECK(result.stats.records == 1);
  REQUIRE(result.reasonings.size() == 1);
  CHECK(result.reasonings[0] == "Because.|A");
}

namespace {

// A record as read, in one string: format | rule | question | reasoning | answer.
std::string describe(const Record& record) {
  return fmt::format("{}|{}|{}|{}|{}", record_format_name(record.format), answer_rule_name(record.answer_rule),
                     record.question, record.reasoning, record.solution);
}

struct FileRead {
  std::vector<std::string> records;
  std::vector<std::string> bad;  // "line: why"
};

FileRead read_file(const std::string& path, const ReadOptions& options = {}) {
  FileRead read;
  read_file_records(
      path, options,
      [&](const Record& record) {
        read.records.push_back(describe(record));
        return true;
      },
      [&](std::uint64_t line, const std::string& why) { read.bad.push_back(fmt::format("{}: {}", line, why)); });
  return read;
}

}  // namespace

TEST_CASE("each record format is read into question, reasoning and final answer by one rule") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-formats");
  const std::string path = (dir / "formats.jsonl").string();
  if (world.rank() == 0) {
    test::write_file(
        path,
        // messages: the last user turn before the final assistant turn; system turns ignored
        R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first?"},)"
        R"( {"role": "assistant", "content": "1"}, {"role": "user", "content": "2+3?"},)"
        R"( {"role": "assistant", "content": "2 plus 3 is 5.\n#### 5"}]})" "\n"
        // seed, with a numeric solution
        R"({"question": "4+4?", "reasoning": "4 and 4 is 8.", "solution": 8})" "\n"
        // GSM8K
        R"({"question": "6/2?", "answer": "Half of 6 is 3.\n#### 3"})" "\n"
        // MATH, nested braces in the box
        R"({"problem": "1/2 of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$."})" "\n"
        // prompt/completion, no marker: the last number
        R"({"prompt": "3*3?", "completion": "3 times 3 makes 9 apples."})" "\n"
        // prompt/completion with a box
        R"({"prompt": "2*5?", "completion": "So \\boxed{10}."})" "\n"
        // conversational prompt/completion (TRL)
        R"({"prompt": [{"role": "user", "content": "7-2?"}], "completion": [{"role": "assistant", "content": "-5 no, 5."}]})" "\n");
  }
  world.barrier();
  FileRead read = read_file(path);
  CHECK(read.bad.empty());
  const std::vector<std::string> expected = {
      "messages|####|2+3?|2 plus 3 is 5.\n|5",
      "seed|####|4+4?|4 and 4 is 8.|8",
      "question/answer|####|6/2?|Half of 6 is 3.\n|3",
      "problem/solution|\\boxed{}|1/2 of 1?|It is $\\boxed{\\frac{1}{2}}$.|\\frac{1}{2}",
      "prompt/completion|last number|3*3?|3 times 3 makes 9 apples.|9",
      "prompt/completion|\\boxed{}|2*5?|So \\boxed{10}.|10",
      "prompt/completion|last number|7-2?|-5 no, 5.|5",
  };
  CHECK(read.records == expected);

  // The collective reader reads them the same way (same rule, any rank count).
  ReadResult all = read_all({path});
  CHECK(all.stats.records == expected.size());
  CHECK(all.stats.bad_lines == 0);
}

TEST_CASE("a record that fits no format is one line naming the format it looks like") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-format-errors");
  const std::string path = (dir / "wrong.jsonl").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"messages": [{"role": "user", "content": "2+3?"}]})", "looks like messages, but has no assistant turn"},
      {R"({"messages": [{"role": "assistant", "content": "5"}]})",
       "looks like messages, but has no user turn before its last assistant turn"},
      {R"({"messages": "hello"})", "looks like messages, but \"messages\" is a string, not a list of"},
      {R"({"messages": [{"role": "user"}, {"role": "assistant", "content": "5"}]})",
       "looks like messages, but its turn 1 has no \"content\""},
      {R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "no idea"}]})",
       "the last assistant turn states no final answer"},
      {R"({"question": "q", "reasoning": "r"})", "looks like seed (has \"question\" and \"reasoning\"), but has no \"solution\""},
      {R"({"problem": "p"})", "looks like problem/solution (has \"problem\"), but has no \"solution\""},
      {R"({"problem": "p", "solution": "It is 5."})", "looks like problem/solution, but \"solution\" has no \\boxed{} answer"},
      {R"({"problem": "p", "solution": "\\boxed{5"})", "looks like problem/solution, but \"solution\" has no \\boxed{} answer"},
      {R"({"prompt": "p"})", "looks like prompt/completion (has \"prompt\"), but has no \"completion\""},
      {R"({"completion": "5"})", "looks like prompt/completion (has \"completion\"), but has no \"prompt\""},
      {R"({"prompt": "p", "completion": "#### "})", "field \"completion\" has no \"#### <final answer>\""},
      {R"({"input": "q", "output": "5"})", "fits no record format: needs \"messages\""},
  };
  if (world.rank() == 0) {
    std::string bytes;
    for (const auto& [line, why] : cases) bytes += line + "\n";
    test::write_file(path, bytes);
  }
  world.barrier();
  FileRead read = read_file(path);
  CHECK(read.records.empty());
  REQUIRE(read.bad.size() == cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO(read.bad[i]);
    CHECK(read.bad[i].rfind(fmt::format("{}: {}", i + 1, cases[i].second), 0) == 0);
    CHECK(read.bad[i].find('\n') == std::string::npos);  // one line each
  }
  // The corpus reader reports them as file:line: why.
  ReadResult all = read_all({path});
  CHECK(all.stats.bad_lines == cases.size());
  CHECK(std::find(all.reports.begin(), all.reports.end(),
                  path + ":1: looks like messages, but has no assistant turn") != all.reports.end());

  // corpus.fields maps the question/answer format's names.
  ReadOptions mapped;
  mapped.fields.question = "input";
  mapped.fields.answer = "output";
  if (world.rank() == 0) test::write_file(dir / "mapped.jsonl", R"({"input": "2+3?", "output": "It is 5."})" "\n");
  world.barrier();
  FileRead mapped_read = read_file((dir / "mapped.jsonl").string(), mapped);
  CHECK(mapped_read.records == std::vector<std::string>{"question/answer|last number|2+3?|It is 5.|5"});
}

TEST_CASE("a JSON array file is refused in one line that says how to convert it") {
  Communicator& world = test::runtime().world();
  auto dir = test::shared_temp_dir(world, "corpus-array");
  const std::string path = (dir / "data.json").string();
  if (world.rank() == 0) test::write_file(path, "\xEF\xBB\xBF \n[\n  " + good(1) + ",\n  " + good(2) + "\n]\n");
  world.barrier();
  const std::string expected = path + ": this is a JSON array; JSON Lines expected (one JSON object per line): "
                               "convert it with `jq -c '.[]' " + path + " > " + (dir / "data.jsonl").string() + "`";
  // Every rank refuses it, so no rank waits in a collective for another.
  CHECK_THROWS_WITH(read_all({path}), expected);
  CHECK_THROWS_WITH(read_file(path), expected);
}

}  // namespace metareuse
