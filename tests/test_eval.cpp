// eval: answer extraction (strict by the questions' rule, flexible by the last
// number) and normalisation, reasoning steps, pattern use, question files (every corpus format, corpus.fields, bad lines), summaries, eval.json's
// struct, and the report page's structure. Cases are written by hand from GSM8K's answer
// format ("... #### 72") and the seed's records (datasets/sample_reasoning.jsonl).
// A failing generation is a tokenizer whose decode throws, on a random tiny model.
#include "torch_catch.h"  // libtorch (evaluate.h), then Catch2

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "metareuse/eval/answer.h"
#include "metareuse/eval/eval_file.h"
#include "metareuse/distributed/communicator.h"  // make_loopback_communicator
#include "metareuse/eval/evaluate.h"  // behavior_use, evaluate_questions
#include "metareuse/eval/report.h"
#include "metareuse/eval/run_eval.h"  // format_eval_table
#include "metareuse/run/run_report.h"  // report_inputs_for_run
#include "metareuse/train/metrics.h"     // ValidationLine: the trainer's validation line
#include "test_support.h"

using namespace metareuse;
namespace fs = std::filesystem;

TEST_CASE("the final answer is the text after the last ####, else the last boxed answer", "[eval][unit]") {
  CHECK(extract_final_answer("Natalia sold 48/2 = 24 clips in May.\n#### 72") == "72");
  CHECK(extract_final_answer("#### 1\nsecond try\n#### 2\nextra words") == "2");   // last marker, its line only
  CHECK(extract_final_answer("so the answer is \\boxed{18}.") == "18");
  CHECK(extract_final_answer("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}");  // nested braces
  CHECK_FALSE(extract_final_answer("no answer here").has_value());
  CHECK_FALSE(extract_final_answer("#### \n").has_value());        // an empty marker line
  CHECK_FALSE(extract_final_answer("\\boxed{18").has_value());      // unclosed
  CHECK(extract_final_answer("#### \n but \\boxed{5}") == "5");     // falls back to \boxed
}

TEST_CASE("answers are normalised (commas, dollar signs, white space, trailing dot), numbers by value", "[eval][unit]") {
  CHECK(normalize_answer(" $1,234. ") == "1234");
  CHECK(normalize_answer("18.00") == "18.00");
  CHECK(answers_match("$1,234.", "1234"));
  CHECK(answers_match("18.00", "18"));
  CHECK(answers_match("-3", "-3.0"));
  CHECK(answers_match("x = 3", "x=3"));
  CHECK_FALSE(answers_match("17", "18"));
  CHECK_FALSE(answers_match("", ""));   // nothing stated is never right
  CHECK_FALSE(answers_match("1.5", "15"));
}

TEST_CASE("reasoning steps are the seed's sentences before the final answer", "[eval][unit]") {
  // Lines, and sentences within a line.
  CHECK(count_reasoning_steps("First add. Then multiply!\n2 * 3 = 6.\n#### 6") == 3);
  CHECK(count_reasoning_steps("one line\n\n\ntwo line\n#### 2") == 2);  // empty lines do not count
  CHECK(count_reasoning_steps("3.5 is not a sentence end") == 1);       // '.' needs white space after it
  CHECK(count_reasoning_steps("#### 6") == 0);
  CHECK(count_reasoning_steps("Add them. So \\boxed{6}. Check it.") == 2);  // up to the last \boxed
  CHECK(count_reasoning_steps("") == 0);
  CHECK(reasoning_part("a\n#### 1") == "a\n");
}

TEST_CASE("pattern use matches normalised forms word-aligned", "[eval][unit]") {
  std::vector<metareuse::Pattern> handbook(3);
  handbook[0].text = "divide both sides by <num>";
  handbook[1].text = "So each friend gets 3 cards.";  // an exact-mode sentence is normalised too
  handbook[2].text = "the total";
  PatternMatcher matcher(handbook);
  CHECK(matcher.find("Then DIVIDE both sides by 12 to get x.") == std::vector<std::size_t>{0});
  CHECK(matcher.find("so each friend gets 7 cards.") == std::vector<std::size_t>{1});
  CHECK(matcher.find("the totals differ").empty());  // not word-aligned
  CHECK(matcher.find("Divide both sides by 2; the total is 4.") == std::vector<std::size_t>{0, 2});
}

TEST_CASE("question files: GSM8K and seed records, bad lines skipped and counted", "[eval][unit]") {
  fs::path dir = metareuse::test::temp_dir("eval-questions");
  {
    std::ofstream out(dir / "q.jsonl");
    out << R"({"question": "Q1?", "answer": "Half is 24.\n#### 1,072"})" << "\n"
        << R"({"question": "Q2?", "reasoning": "r", "solution": "3"})" << "\n"
        << "\n"
        << R"({"question": "Q3?"})" << "\n"                          // no answer
        << R"({"question": "Q4?", "answer": "no marker"})" << "\n"   // no final answer
        << "not json\n"
        << R"({"question": "Q5?", "solution": 7})" << "\n";         // a numeric solution is accepted
  }
  QuestionSet set = read_questions((dir / "q.jsonl").string());
  REQUIRE(set.questions.size() == 3);
  CHECK(set.bad_records == 3);
  CHECK(set.questions[0].reference == "1,072");
  CHECK(set.questions[0].reference_reasoning == "Half is 24.\n");
  CHECK(set.questions[1].line == 2);
  CHECK(set.questions[2].reference == "7");
  CHECK(set.questions[2].line == 7);
  CHECK(read_questions((dir / "q.jsonl").string(), 2).questions.size() == 2);
  CHECK_THROWS_WITH(read_questions((dir / "missing.jsonl").string()), Catch::Contains("missing.jsonl"));
}

TEST_CASE("strict and flexible accuracy side by side, on hand-written generations", "[eval][unit]") {
  // Strict: the question's own rule; flexible: the last number (lm-evaluation-harness's two GSM8K filters).
  struct Case {
    const char* output;
    const char* reference;
    AnswerRule rule;
    std::optional<std::string> strict_answer;
    bool strict;
    std::optional<std::string> flexible_answer;
    bool flexible;
  };
  const std::vector<Case> cases = {
      // GSM8K's marker written: both agree.
      {"48/2 = 24 in May, 48+24 = 72.\n#### 72", "72", AnswerRule::kHashes, "72", true, "72", true},
      // Right number, no marker: flexible only.
      {"48/2 = 24 in May, so she sold 72 clips.", "72", AnswerRule::kHashes, std::nullopt, false, "72", true},
      // Marker then more text with a number: strict keeps the marker's line, flexible takes the last number.
      {"#### 72\nThat is 3 more than 69", "72", AnswerRule::kHashes, "72", true, "69", false},
      // Thousands separators and a dollar sign are normalised away on both sides.
      {"The total is $1,072.\n#### $1,072", "1072", AnswerRule::kHashes, "$1,072", true, "1,072", true},
      // MATH: the last \boxed{} with nested braces; the last number is not the answer.
      {"so $x = \\boxed{\\frac{1}{2}}$ for n = 3", "\\frac{1}{2}", AnswerRule::kBoxed, "\\frac{1}{2}", true, "3",
       false},
      {"so the answer is \\boxed{18}.", "18", AnswerRule::kBoxed, "18", true, "18", true},
      // A negative number and a decimal point.
      {"The change is -4.50 degrees.", "-4.5", AnswerRule::kLastNumber, "-4.50", true, "-4.50", true},
      // No number at all.
      {"I do not know.", "5", AnswerRule::kLastNumber, std::nullopt, false, std::nullopt, false},
      // A wrong marked answer.
      {"#### 71", "72", AnswerRule::kHashes, "71", false, "71", false},
  };
  for (const Case& c : cases) {
    INFO(c.output);
    const AnswerCheck check = check_answer(c.output, c.reference, c.rule);
    CHECK(check.strict_answer == c.strict_answer);
    CHECK(check.strict == c.strict);
    CHECK(check.flexible_answer == c.flexible_answer);
    CHECK(check.flexible == c.flexible);
  }

  // The summary counts both, and eval.json carries both with the rule.
  std::vector<AnswerRecord> results(4);
  results[0].correct = true;
  results[0].correct_flexible = true;
  results[1].correct_flexible = true;
  results[2].correct_flexible = true;
  const Summary summary = summarize(results);
  CHECK(summary.correct == 1);
  CHECK(summary.accuracy == 0.25);
  CHECK(summary.correct_flexible == 3);
  CHECK(summary.accuracy_flexible == 0.75);
  EvalFile file;
  file.answer_rule = "####";
  EvalModelEntry entry;
  entry.role = "model";
  entry.summary = summary;
  file.models = {entry};
  const nlohmann::ordered_json written = file.to_json();
  CHECK(written["answer_rule"]["strict"] == "####");
  CHECK(written["answer_rule"]["flexible"] == "last number");
  CHECK(written["models"]["model"]["summary"]["accuracy"] == 0.25);           // the key older readers know
  CHECK(written["models"]["model"]["summary"]["accuracy_flexible"] == 0.75);
  const EvalFile read = EvalFile::from_json(nlohmann::json::parse(written.dump()), "eval.json");
  CHECK(read.answer_rule == "####");
  CHECK(read.models[0].summary.correct_flexible == 3);
  // An eval.json of an older build reads with no flexible figures.
  const EvalFile old = EvalFile::from_json(
      nlohmann::json::parse(R"({"models": {"model": {"summary": {"accuracy": 0.5, "correct": 1}}}})"), "old.json");
  CHECK(old.models[0].summary.accuracy == 0.5);
  CHECK(old.models[0].summary.accuracy_flexible == 0.0);
  // The terminal table shows both columns and names the rules.
  const std::string table = format_eval_table(file);
  CHECK_THAT(table, Catch::Contains("accuracy") && Catch::Contains("flexible") && Catch::Contains("25.0%") &&
                        Catch::Contains("75.0%") && Catch::Contains("the answer by ####"));
  // answers.jsonl's line keeps both answers.
  results[1].flexible_answer = "7";
  CHECK(results[1].to_json()["flexible_answer"] == "7");
  CHECK(results[1].to_json()["correct_flexible"] == true);
  const AnswerRecord read_back = AnswerRecord::from_json(nlohmann::json::parse(results[1].to_line()));
  CHECK(read_back.correct_flexible);
  CHECK(read_back.flexible_answer == "7");
}

TEST_CASE("question files in every corpus format, with corpus.fields, by the corpus's rule", "[eval][unit]") {
  fs::path dir = metareuse::test::temp_dir("eval-formats");
  {
    std::ofstream out(dir / "q.jsonl");
    out << R"({"messages": [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "It is 5.\n#### 5"}]})" "\n"
        << R"({"problem": "Half of 1?", "solution": "$\\boxed{\\frac{1}{2}}$"})" "\n"
        << R"({"prompt": "3*3?", "completion": "It makes 9."})" "\n"
        << R"({"messages": [{"role": "user", "content": "no answer"}]})" "\n";  // no assistant turn: skipped
  }
  QuestionSet set = read_questions((dir / "q.jsonl").string());
  REQUIRE(set.questions.size() == 3);
  CHECK(set.bad_records == 1);
  CHECK(set.questions[0].question == "2+3?");
  CHECK(set.questions[0].reference == "5");
  CHECK(set.questions[0].answer_rule == AnswerRule::kHashes);
  CHECK(set.questions[1].reference == "\\frac{1}{2}");
  CHECK(set.questions[1].answer_rule == AnswerRule::kBoxed);
  CHECK(set.questions[2].reference == "9");
  CHECK(set.questions[2].answer_rule == AnswerRule::kLastNumber);
  CHECK(answer_rules_of(set.questions) == "####, \\boxed{}, last number");

  // corpus.fields: the names training reads are the names eval reads.
  {
    std::ofstream out(dir / "mapped.jsonl");
    out << R"({"input": "4+4?", "output": "4 and 4 make 8.\n#### 8"})" "\n";
  }
  FieldNames fields;
  fields.question = "input";
  fields.answer = "output";
  QuestionSet mapped = read_questions((dir / "mapped.jsonl").string(), 0, fields);
  REQUIRE(mapped.questions.size() == 1);
  CHECK(mapped.questions[0].question == "4+4?");
  CHECK(mapped.questions[0].reference == "8");
  CHECK(read_questions((dir / "mapped.jsonl").string()).questions.empty());  // without the mapping: no format fits

  {
    std::ofstream out(dir / "array.json");
    out << R"([{"question": "q", "answer": "#### 1"}])";
  }
  CHECK_THROWS_WITH(read_questions((dir / "array.json").string()),
                    Catch::Contains("this is a JSON array; JSON Lines expected") && Catch::Contains("jq -c"));
}

TEST_CASE("mean, median and relative change", "[eval][unit]") {
  CHECK(mean_of({}) == 0.0);
  CHECK(mean_of({1, 2, 6}) == 3.0);
  CHECK(median_of({5, 1, 3}) == 3.0);
  CHECK(median_of({4, 1, 3, 2}) == 2.5);
  CHECK(*relative_change(80, 100) == Approx(-0.2));
  CHECK_FALSE(relative_change(1, 0).has_value());
}

TEST_CASE("eval.json is written from its struct and read back into it", "[eval][unit]") {
  EvalFile file;
  file.questions_file = "q.jsonl";
  file.questions = 2;
  file.augment_mode = "global";
  file.definitions = metric_definitions();
  EvalModelEntry model;
  model.role = "model";
  model.path = "m";
  model.summary.accuracy = 0.5;
  model.summary.correct = 1;
  model.change_vs_baseline = SummaryChange{};
  model.change_vs_baseline->accuracy_points = 50.0;
  EvalModelEntry baseline;
  baseline.role = "baseline";
  file.models = {model, baseline};
  file.relative_change = model.change_vs_baseline;
  file.relative_change_of = "model";
  file.answers = "answers.jsonl";
  const nlohmann::ordered_json written = file.to_json();
  CHECK(written["format"] == kEvalFormat);
  CHECK(written["generation"]["temperature"].is_null());  // greedy
  CHECK(written["models"].begin().key() == "model");     // evaluation order
  CHECK(written["models"]["model"]["change_vs_baseline"]["accuracy"].is_null());
  CHECK_FALSE(written["models"]["baseline"].contains("change_vs_baseline"));
  const EvalFile read = EvalFile::from_json(nlohmann::json::parse(written.dump()), "eval.json");
  REQUIRE(read.find("model") != nullptr);
  CHECK(read.find("model")->summary.accuracy == 0.5);
  CHECK(read.find("model")->change_vs_baseline->accuracy_points == 50.0);
  CHECK_FALSE(read.find("model")->change_vs_baseline->accuracy.has_value());
  CHECK(read.relative_change_of == "model");
  CHECK(read.definition("accuracy", "?") == file.definition("accuracy", "!"));
  CHECK(read.to_json()["models"]["model"] == written["models"]["model"]);
  CHECK_THROWS_WITH(EvalFile::from_json(nlohmann::json::parse(R"({"questions": 1})"), "x.json"),
                    Catch::Contains("x.json"));
}

TEST_CASE("behavior use: retrieved, applied, accuracy and reasoning tokens applied vs not", "[eval][unit]") {
  metareuse::Handbook handbook;
  handbook.patterns.resize(3);
  handbook.patterns[0].name = "behavior_total";
  handbook.patterns[0].instruction = "A total of <num>";
  handbook.patterns[1].name = "behavior_rate";
  handbook.patterns[2].name = "behavior_never";
  // Answers name patterns by their handbook names.
  auto result = [&](bool correct, std::int64_t tokens, std::vector<std::size_t> used, std::vector<std::size_t> carried) {
    AnswerRecord r;
    r.correct = correct;
    r.reasoning_tokens = tokens;
    for (std::size_t i : used) r.patterns_used.push_back(handbook.patterns[i].name);
    for (std::size_t i : carried) r.patterns_shown.push_back(handbook.patterns[i].name);
    return r;
  };
  // Pattern 0: applied by answers 0 and 1 (one correct; 10 and 30 tokens), not by 2 and 3 (both correct; 50, 70).
  const std::vector<AnswerRecord> results = {result(true, 10, {0}, {0, 1}), result(false, 30, {0, 1}, {0}),
                                             result(true, 50, {}, {1}), result(true, 70, {1}, {})};
  auto uses = behavior_use(results, handbook);
  REQUIRE(uses.size() == 3);
  CHECK(uses[0].name == "behavior_total");
  CHECK(uses[0].instruction == "A total of <num>");
  CHECK(uses[0].retrieved == 2);
  CHECK(uses[0].applied == 2);
  CHECK(*uses[0].accuracy_applied == 0.5);
  CHECK(*uses[0].accuracy_not_applied == 1.0);
  CHECK(*uses[0].mean_reasoning_tokens_applied == 20.0);
  CHECK(*uses[0].mean_reasoning_tokens_not_applied == 60.0);
  CHECK(uses[1].retrieved == 2);
  CHECK(uses[1].applied == 2);
  CHECK(*uses[1].mean_reasoning_tokens_applied == 50.0);
  CHECK(uses[2].applied == 0);
  CHECK_FALSE(uses[2].accuracy_applied.has_value());  // no answer applied it: null, not 0
  CHECK(*uses[2].accuracy_not_applied == 0.75);
  // Into eval.json and back.
  EvalFile file;
  EvalModelEntry entry;
  entry.role = "model";
  entry.behaviors = uses;
  file.models = {entry};
  auto written = file.to_json();
  CHECK(written["models"]["model"]["behaviors"][2]["accuracy_applied"].is_null());
  auto read = EvalFile::from_json(nlohmann::json::parse(written.dump()), "eval.json");
  CHECK(read.models[0].behaviors[0].mean_reasoning_tokens_not_applied == 60.0);
  CHECK_FALSE(read.models[0].behaviors[2].accuracy_applied.has_value());
}

TEST_CASE("the report is one self-contained page with charts and tables", "[eval][unit]") {
  fs::path run = metareuse::test::temp_dir("eval-report");
  {
    std::ofstream metrics(run / "metrics.jsonl");
    for (int step = 1; step <= 5; ++step) {
      metrics << nlohmann::json{{"step", step}, {"loss", 5.0 / step}, {"loss_scale", 65536.0 / step},
                                {"seconds", 0.5}}
                     .dump()
              << "\n";
    }
    metrics << "{broken\n";
    std::ofstream handbook(run / "handbook.json");
    handbook << R"({"format": "metareuse.handbook", "version": 1, "records": 10, "mode": "normalized",
                  "patterns": [{"text": "divide both sides by <num>", "support": 7, "kind": "phrase"}]})";
    fs::create_directories(run / "eval");
    std::ofstream eval(run / "eval" / "eval.json");
    eval << R"({"questions": 2, "models": {"model": {"path": "m", "summary": {"accuracy": 0.5, "correct": 1}},
               "baseline": {"path": "b<x>", "summary": {"accuracy": 0.0, "correct": 0}}},
               "relative_change": {"accuracy": null, "accuracy_points": 50.0, "mean_reasoning_steps": -0.25},
               "wall_seconds": 3.0})";
    std::ofstream answers(run / "eval" / "answers.jsonl");
    answers << R"({"model": "model", "reasoning_steps": 2, "generated_tokens": 10})" << "\n"
            << R"({"model": "baseline", "reasoning_steps": 4, "generated_tokens": 30})" << "\n";
  }
  ReportInputs inputs = report_inputs_for_run(run.string());
  std::string html = render_report_html(inputs);
  CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>"));
  // Four charts: loss, loss scale, two histograms.
  std::size_t charts = 0;
  for (std::size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++charts;
  CHECK(charts == 4);
  CHECK_THAT(html, Catch::Contains("divide both sides by &lt;num&gt;"));  // escaped
  CHECK_THAT(html, Catch::Contains("b&lt;x&gt;"));
  CHECK_THAT(html, Catch::Contains("50.0%"));
  CHECK_THAT(html, Catch::Contains("1 unreadable lines skipped"));
  CHECK_THAT(html, Catch::Contains("Tuned against baseline: accuracy +50.0 points"));
  CHECK_THAT(html, Catch::Contains("mean reasoning steps -25.0%"));
  CHECK_THAT(html, Catch::Contains("No resolved config"));  // config.resolved.json is absent and says so
  // Self-contained: nothing is fetched (the only URL is the SVG namespace).
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
  write_report(inputs, (run / "report.html").string());
  CHECK(fs::file_size(run / "report.html") == html.size());
}

TEST_CASE("the report draws the validation loss beside the training loss", "[eval][unit]") {
  fs::path run = metareuse::test::temp_dir("eval-report-validation");
  {
    std::ofstream metrics(run / "metrics.jsonl");
    for (int step = 1; step <= 6; ++step) {
      metrics << nlohmann::json{{"step", step}, {"loss", 6.0 - 0.5 * step}, {"loss_scale", 1.0}, {"seconds", 0.2}}
                     .dump()
              << "\n";
      if (step % 2 == 0) {
        ValidationLine line;
        line.step = step;
        line.val_loss = 5.0 - 0.25 * step;
        line.val_tokens = 100;
        metrics << line.to_json().dump() << "\n";
      }
    }
  }
  const MetricsFile read = read_metrics((run / "metrics.jsonl").string());
  CHECK(read.lines.size() == 6);  // a validation line is not a step's line
  REQUIRE(read.validation.size() == 3);
  CHECK(read.validation[2].step == 6);
  CHECK(read.validation[2].val_loss == 3.5);
  CHECK(read.validation[2].val_tokens == 100);

  std::string html = render_report_html(report_inputs_for_run(run.string()));
  CHECK_THAT(html, Catch::Contains("6 optimizer steps"));
  CHECK_THAT(html, Catch::Contains("Validation: 3 evaluations, loss 4.5 &rarr; 3.5, best 3.5 at step 6"));
  // The loss chart has two lines and a legend naming them; the other charts keep one line.
  const std::size_t loss_chart = html.find("aria-label=\"Loss\"");
  REQUIRE(loss_chart != std::string::npos);
  const std::string svg = html.substr(loss_chart, html.find("</svg>", loss_chart) - loss_chart);
  std::size_t lines = 0;
  for (std::size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++lines;
  CHECK(lines == 2);
  CHECK_THAT(svg, Catch::Contains("training loss") && Catch::Contains("validation loss"));

  SECTION("without validation lines the loss chart has one line and no legend") {
    std::ofstream(run / "metrics.jsonl") << nlohmann::json{{"step", 1}, {"loss", 2.0}, {"loss_scale", 1.0}}.dump()
                                         << "\n";
    const std::string plain = render_report_html(report_inputs_for_run(run.string()));
    CHECK(plain.find("validation loss") == std::string::npos);
    CHECK(plain.find("Validation:") == std::string::npos);
  }
}

TEST_CASE("the report names the run, keeps legends off the bars, and explains itself", "[eval][unit]") {
  fs::path run = metareuse::test::temp_dir("eval-report-reader") / "run";  // a folder named "run"
  fs::create_directories(run / "eval");
  {
    std::ofstream metrics(run / "metrics.jsonl");
    for (int step = 1; step <= 30; ++step) {
      metrics << nlohmann::json{{"step", step}, {"loss", 6.0 - 0.1 * step}, {"loss_scale", 1.0}, {"seconds", 0.2}}.dump()
              << "\n";
    }
    std::ofstream(run / "config.resolved.json") << R"({"run": {"name": "gsm8k-tiny"}, "train": {"lr": 0.001}})";
    std::ofstream(run / "handbook.json")
        << R"({"format": "metareuse.handbook", "version": 1, "records": 10, "mode": "normalized",
              "config": {"selection": "coverage"},
              "patterns": [{"text": "a", "support": 3, "kind": "phrase"}, {"text": "b", "support": 7, "kind": "phrase"}]})";
    std::ofstream(run / "eval" / "eval.json")
        << R"({"questions": 3, "models": {"model": {"path": "m", "summary": {"accuracy": 0.5, "correct": 1,
              "questions": 3}}}})";
    std::ofstream answers(run / "eval" / "answers.jsonl");
    for (int tokens : {10, 12, 40}) {  // the tallest bin is the first one, under where a legend would sit
      answers << nlohmann::json{{"model", "model"}, {"reasoning_steps", 3}, {"generated_tokens", tokens}}.dump() << "\n";
    }
    // Written out of pipeline order on purpose: the table follows "sequence".
    std::ofstream(run / "timings.json") << R"({"stages": {"augment": {"seconds": 2, "sequence": 2},
              "patterns": {"seconds": 1, "sequence": 1}}})";
  }
  std::string html = render_report_html(report_inputs_for_run(run.string()));
  // The title is the run's name, not "metareuse run run" from the folder.
  CHECK_THAT(html, Catch::Contains("<h1>metareuse report: gsm8k-tiny</h1>"));
  CHECK(html.find("metareuse run run") == std::string::npos);
  // Summary, explanations for a reader.
  CHECK_THAT(html, Catch::Contains("30 optimizer steps, loss 5.9 &rarr; 3"));
  CHECK_THAT(html, Catch::Contains("loss scale stayed at 1"));
  CHECK_THAT(html, Catch::Contains("No baseline model"));
  CHECK_THAT(html, Catch::Contains("support is not sorted"));
  CHECK(html.find("stage patterns") < html.find("stage augment"));
  // Each histogram's legend sits above its plot frame: every legend swatch's y
  // is smaller than the frame's y (the frame is the rect with fill="none").
  std::size_t histogram_start = html.find("Generated tokens per answer");
  REQUIRE(histogram_start != std::string::npos);
  std::string svg = html.substr(histogram_start, html.find("</svg>", histogram_start) - histogram_start);
  auto y_of = [&](std::size_t at) { return std::stod(svg.substr(svg.find("y=\"", at) + 3)); };
  std::size_t frame = svg.find("fill=\"none\"");
  REQUIRE(frame != std::string::npos);
  double frame_y = y_of(svg.rfind("<rect", frame));
  std::size_t swatch = svg.find("width=\"10\" height=\"10\"");
  REQUIRE(swatch != std::string::npos);
  CHECK(y_of(svg.rfind("<rect", swatch)) + 10 <= frame_y);
  CHECK_THAT(svg, Catch::Contains("tuned (n=3)"));
}

namespace {

// Bytes as ids, bos 256, eos 257; its first `failures` decodes throw, as a
// generation that runs out of memory would.
class FailingTokenizer : public Tokenizer {
 public:
  explicit FailingTokenizer(int failures) : failures_(failures) {}
  TokenizerKind kind() const override { return TokenizerKind::kSentencePiece; }
  std::int64_t vocab_size() const override { return 258; }
  std::vector<TokenId> encode(std::string_view text) const override {
    return std::vector<TokenId>(text.begin(), text.end());
  }
  std::vector<TokenId> encode_with_special(std::string_view text) const override { return encode(text); }
  std::string decode(const std::vector<TokenId>& ids) const override {
    if (failures_-- > 0) throw std::runtime_error("out of memory (a test)");
    std::string text;
    for (TokenId id : ids) {
      if (id >= 0 && id < 256) text += static_cast<char>(id);
    }
    return text;
  }
  std::optional<TokenId> special_id(std::string_view) const override { return std::nullopt; }
  TokenId bos_id() const override { return 256; }
  TokenId eos_id() const override { return 257; }

 private:
  mutable int failures_;
};

}  // namespace

TEST_CASE("a batch whose generation throws is recorded as failed, and the others go on", "[eval][unit]") {
  torch::manual_seed(0);
  const LlamaModel model(LlamaConfig::preset("debug-tiny"));
  const FailingTokenizer tokenizer(1);  // the first batch fails
  std::vector<Question> questions(3);
  for (std::size_t i = 0; i < questions.size(); ++i) {
    questions[i].line = static_cast<std::int64_t>(i) + 1;
    questions[i].question = "What is 1 + " + std::to_string(i) + "?";
    questions[i].reference = std::to_string(1 + i);
  }
  const PromptPolicy bare(nullptr, AugmentMode::kNone, 0, 1.2, 0.75);
  const PatternMatcher matcher({});
  EvalOptions options;
  options.template_name = "plain";
  options.max_new_tokens = 3;
  options.batch_size = 1;
  auto world = make_loopback_communicator(0, 1);
  const std::vector<AnswerRecord> results =
      evaluate_questions(model, tokenizer, questions, bare, matcher, options, *world);
  REQUIRE(results.size() == 3);
  CHECK(results[0].error == "out of memory (a test)");
  CHECK_FALSE(results[0].correct);
  CHECK(results[0].output.empty());
  CHECK(results[0].prompt_tokens > 0);  // what was known before generation stays
  CHECK(results[1].error.empty());
  CHECK(results[2].error.empty());
  CHECK(summarize(results).failed == 1);
  CHECK(results[0].to_json()["error"] == "out of memory (a test)");
  CHECK_FALSE(results[1].to_json().contains("error"));  // answers.jsonl as before
  CHECK(AnswerRecord::from_json(results[0].to_json()).error == results[0].error);
  CHECK(Summary::from_json(summarize(results).to_json()).failed == 1);
}
