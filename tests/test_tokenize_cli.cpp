// `metareuse tokenize` from the outside, in the binary that links libtorch:
// Llama 3 ids, JSON Lines in and out, the --special opt-in, bad tokenizer
// files, and sentencepiece training and encoding.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "cli_runner.h"
#include "metareuse/core/error.h"
#include "test_support.h"
#include "tokenizer_support.h"

using metareuse::test::run_metareuse;
using Catch::Matchers::Contains;

namespace {

using metareuse::test::read_file;

}  // namespace

TEST_CASE("tokenize --text prints Llama 3 ids, special text stays text unless --special", "[cli][tokenize]") {
  METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path);
  auto plain = run_metareuse("tokenize --tokenizer '" + path + "' --text 'Hello world<|eot_id|>'");
  REQUIRE(plain.status == 0);
  CHECK(plain.output == "[9906,1917,27,91,68,354,851,91,29]\n");
  auto special = run_metareuse("tokenize --tokenizer '" + path + "' --text 'Hello world<|eot_id|>' --special");
  REQUIRE(special.status == 0);
  CHECK(special.output == "[9906,1917,128009]\n");
}

TEST_CASE("tokenize --input adds ids to each record and reports bad ones", "[cli][tokenize]") {
  METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path);
  auto dir = metareuse::test::temp_dir("tokenize-cli");
  {
    std::ofstream in(dir / "in.jsonl");
    in << R"({"id": 7, "text": "Hello world"})" << "\n"
       << "not json\n"
       << R"({"id": 8})" << "\n"
       << R"({"text": "2+2=4"})" << "\n";
  }
  auto result = run_metareuse("tokenize --tokenizer '" + path + "' --input " + (dir / "in.jsonl").string() +
                              " --out " + (dir / "out.jsonl").string());
  REQUIRE(result.status == 0);
  CHECK_THAT(result.output, Contains("in.jsonl:2: skipped") && Contains("in.jsonl:3: skipped: no string field \"text\"") &&
                                Contains("2 bad record(s)"));
  CHECK(read_file(dir / "out.jsonl") ==
        "{\"id\":7,\"text\":\"Hello world\",\"ids\":[9906,1917]}\n{\"text\":\"2+2=4\",\"ids\":[17,10,17,28,19]}\n");
  auto strict = run_metareuse("tokenize --strict --tokenizer '" + path + "' --input " + (dir / "in.jsonl").string() +
                              " --out " + (dir / "out2.jsonl").string());
  CHECK(strict.status == 4);
}

TEST_CASE("tokenize refuses bad tokenizer files and bad flags", "[cli][tokenize]") {
  auto dir = metareuse::test::temp_dir("tokenize-bad");
  std::ofstream(dir / "tokenizer.json") << "{\"model\": {\"type\": \"WordPiece\"}}";
  auto wrong = run_metareuse("tokenize --tokenizer " + (dir / "tokenizer.json").string() + " --text hi");
  CHECK(wrong.status == 1);
  CHECK_THAT(wrong.output, Contains("tokenizer.json") && Contains("'model.type' is 'WordPiece'"));
  auto missing = run_metareuse("tokenize --tokenizer " + (dir / "nope.model").string() + " --text hi");
  CHECK(missing.status == 1);
  CHECK_THAT(missing.output, Contains("nope.model: cannot open"));
  auto nothing = run_metareuse("tokenize --tokenizer " + (dir / "tokenizer.json").string());
  CHECK(nothing.status == 64);
  auto no_out = run_metareuse("tokenize --tokenizer x --input " + (dir / "tokenizer.json").string());
  CHECK(no_out.status == 64);
}

TEST_CASE("sentencepiece trains and encodes inside the libtorch binary", "[cli][tokenize][sentencepiece]") {
  auto dir = metareuse::test::temp_dir("tokenize-sentencepiece");
  auto model = (dir / "tiny.model").string();
  auto trained = run_metareuse("tokenize --train datasets/sample_reasoning.jsonl --vocab-size 600 --tokenizer " + model);
  INFO(trained.output);
  REQUIRE(trained.status == 0);
  CHECK_THAT(trained.output, Contains("sentencepiece:600:"));
  auto encoded = run_metareuse("tokenize --tokenizer " + model + " --text 'The answer is 42.'");
  INFO(encoded.output);
  REQUIRE(encoded.status == 0);
  auto ids = nlohmann::json::parse(encoded.output);
  REQUIRE(ids.is_array());
  CHECK(ids.size() > 3);
  for (const auto& id : ids) CHECK(id.get<int>() < 600);
  auto too_small = run_metareuse("tokenize --train datasets/sample_reasoning.jsonl --vocab-size 100 --tokenizer " +
                                 (dir / "small.model").string());
  CHECK(too_small.status == 1);
  CHECK_THAT(too_small.output, Contains("Vocabulary size is smaller than required_chars"));
}

TEST_CASE("prepare writes the same file at 1 and 3 ranks and rejects bad input", "[cli][prepare]") {
  METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path);
  auto dir = metareuse::test::temp_dir("prepare-cli");
  {
    std::ofstream out(dir / "augmented.jsonl");
    for (int i = 0; i < 30; ++i) {
      out << nlohmann::json{{"prompt", "Question " + std::to_string(i) + ": what is " + std::to_string(i) + "+1?"},
                            {"target", std::string(i % 7, '.') + "#### " + std::to_string(i + 1)}}
                 .dump()
          << "\n";
    }
  }
  const std::string common = " --tokenizer '" + path + "' --input " + (dir / "augmented.jsonl").string() +
                             " --sequence-length 64 --out ";
  // The same --out both times: the resolved config (stored in the file) names it.
  auto one = run_metareuse("prepare" + common + (dir / "dataset.h5").string());
  INFO(one.output);
  REQUIRE(one.status == 0);
  std::filesystem::rename(dir / "dataset.h5", dir / "one.h5");
  CHECK_THAT(one.output, Contains("30 record(s) (0 bad), 30 document(s)") && Contains("packing efficiency"));
  auto three = metareuse::test::run_metareuse_mpi(3, "prepare" + common + (dir / "dataset.h5").string());
  INFO(three.output);
  REQUIRE(three.status == 0);
  CHECK_THAT(three.output, Contains("on 3 rank(s)"));
  const std::string bytes_one = read_file(dir / "one.h5"), bytes_three = read_file(dir / "dataset.h5");
  CHECK(bytes_one.size() == bytes_three.size());
  CHECK((bytes_one == bytes_three));  // byte for byte (no timestamps in the file)

  std::ofstream(dir / "bad.jsonl") << "{\"question\": \"no prompt here\"}\n";
  auto bad = run_metareuse("prepare --tokenizer '" + path + "' --input " + (dir / "bad.jsonl").string() + " --out " +
                           (dir / "bad.h5").string());
  CHECK(bad.status == 1);
  CHECK_THAT(bad.output, Contains("bad.jsonl:1: skipped: no string field \"prompt\"") && Contains("no usable records"));
}

// Documents longer than the sequence: dropped with a warning that gives the
// share (the default), cut to the sequence length, or refused (dataset.overflow).
TEST_CASE("prepare warns with the share of documents too long for the sequence, and dataset.overflow truncates or "
          "refuses them", "[cli][prepare]") {
  METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path);
  auto dir = metareuse::test::temp_dir("prepare-overflow");
  {
    std::ofstream out(dir / "augmented.jsonl");
    for (int i = 0; i < 10; ++i) {
      std::string target = "#### " + std::to_string(i + 1);
      if (i % 5 < 2) {  // records 0, 1, 5, 6: some 200 words
        for (int word = 0; word < 200; ++word) target = "word " + target;
      }
      out << nlohmann::json{{"prompt", "Question " + std::to_string(i) + ": what is " + std::to_string(i) + "+1?"},
                            {"target", target}}
                 .dump()
          << "\n";
    }
  }
  const std::string common = "prepare --tokenizer '" + path + "' --input " + (dir / "augmented.jsonl").string() +
                             " --sequence-length 64 --out " + (dir / "dataset.h5").string();
  auto dropped = run_metareuse(common);
  INFO(dropped.output);
  CHECK(dropped.status == 0);
  CHECK_THAT(dropped.output, Contains("[warning]") &&
                                 Contains("4 of 10 document(s) (40.0%) are longer than dataset.sequence_length 64") &&
                                 Contains("dataset.overflow=truncate") && Contains("6 document(s) (4 longer"));
  auto truncated = run_metareuse(common + " --set dataset.overflow=truncate");
  INFO(truncated.output);
  CHECK(truncated.status == 0);
  CHECK_THAT(truncated.output, Contains("truncated to their first 64 tokens") &&
                                   Contains("10 document(s) (0 longer than 64 tokens dropped, 4 truncated)"));
  auto refused = run_metareuse(common + " --set dataset.overflow=error");
  INFO(refused.output);
  CHECK(refused.status == 1);
  CHECK_THAT(refused.output, Contains("4 of 10 document(s) (40.0%) are longer than dataset.sequence_length 64") &&
                                 Contains("raise --sequence-length"));
}
