// The tokenized dataset and the sampler, alone and under mpiexec -n 2 / -n 3:
// packing and masks on hand-checked examples, the file the same for any rank
// count, load-time refusals, and the sampler's coverage, disjointness and
// exact resume.
#include <catch2/catch.hpp>

#include <hdf5.h>            // to locate a chunk and flip its bytes
#include <signal.h>
#include <sys/resource.h>      // a file-size limit

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <set>

#include "metareuse/core/error.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/dataset/sampler.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "hdf5_faults.h"  // flip_chunk_bytes
#include "test_support.h"
#include "tokenizer_support.h"

using namespace metareuse;
using Catch::Matchers::Contains;

namespace {

Communicator& world() { return test::runtime().world(); }

// A folder every rank agrees on.
std::filesystem::path shared_temp_dir(const std::string& name) { return test::shared_temp_dir(world(), name); }

std::string base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(alphabet[(buffer >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(alphabet[(buffer << (6 - bits)) & 63]);
  while (out.size() % 4 != 0) out.push_back('=');
  return out;
}

// 256 byte tokens plus "ab" (256) and "bc" (257); specials from 258 (bos 258, eos 259).
std::string write_tiny_tokenizer(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  auto path = dir / "tiny.model";
  std::ofstream out(path);
  int rank = 0;
  for (int byte = 0; byte < 256; ++byte) out << base64(std::string(1, char(byte))) << " " << rank++ << "\n";
  for (const char* token : {"ab", "bc"}) out << base64(token) << " " << rank++ << "\n";
  return path.string();
}

DocumentTokens document(std::int64_t record, std::vector<TokenId> ids, std::vector<std::uint8_t> mask) {
  return {record, {std::move(ids), std::move(mask)}};
}

}  // namespace

TEST_CASE("packing keeps documents whole and marks their boundaries", "[dataset]") {
  std::vector<DocumentTokens> documents = {
      document(2, {20, 21}, {0, 1}),  // given out of order: packed by record
      document(0, {1, 2, 3}, {0, 1, 1}),
      document(1, {10, 11, 12, 13}, {0, 0, 1, 1}),
      document(3, {30, 31, 32, 33, 34, 35, 36}, {1, 1, 1, 1, 1, 1, 1}),  // longer than a sequence: dropped
  };
  auto packed = pack_documents(documents, 6, true, 99);
  REQUIRE(packed.sequences == 2);
  CHECK(packed.tokens == std::vector<TokenId>{1, 2, 3, 99, 99, 99, 10, 11, 12, 13, 20, 21});
  CHECK(packed.loss_mask == std::vector<std::uint8_t>{0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1});
  CHECK(packed.segment_ids == std::vector<std::int32_t>{0, 0, 0, -1, -1, -1, 0, 0, 0, 0, 1, 1});
  CHECK(packed.positions == std::vector<std::int32_t>{0, 1, 2, 0, 0, 0, 0, 1, 2, 3, 0, 1});
  CHECK(packed.documents == std::vector<std::int64_t>{0, 0, 0, 3, 1, 1, 0, 4, 2, 1, 4, 2});
  CHECK(packed.metadata.documents == 3);
  CHECK(packed.metadata.dropped_documents == 1);
  CHECK(packed.metadata.real_tokens == 9);
  CHECK(packed.metadata.packing_efficiency == Approx(9.0 / 12.0));

  auto unpacked = pack_documents(documents, 6, false, 99);
  CHECK(unpacked.sequences == 3);
  CHECK(unpacked.metadata.packing_efficiency == Approx(9.0 / 18.0));
}

TEST_CASE("prepare gives the same file at any rank count, with the right masks", "[dataset][mpi]") {
  auto dir = shared_temp_dir("prepare");
  const std::string tokenizer_path = write_tiny_tokenizer(dir / ("rank" + std::to_string(world().rank())));
  auto tokenizer = load_tokenizer(tokenizer_path);
  const std::string input = (dir / "augmented.jsonl").string();
  if (world().rank() == 0) {
    std::ofstream out(input);
    out << R"({"prompt": "ab", "target": "bc"})" << "\n"
        << "this line is not JSON\n"
        << R"({"prompt": "x", "target": "abc", "patterns": ["p1"]})" << "\n"
        << R"({"prompt": "only a prompt"})" << "\n";
    for (int i = 0; i < 20; ++i) out << R"({"prompt": "q)" << i << R"(", "target": "a)" << std::string(i % 5, 'b') << "\"}\n";
  }
  world().barrier();
  PrepareOptions options;
  options.input = input;
  options.output = (dir / "dataset.h5").string();
  options.template_name = "plain";
  options.sequence_length = 16;
  options.config_json = "{\"test\": true}";
  PrepareReport report = prepare_dataset(options, *tokenizer, world());
  CHECK(report.records == 24);
  CHECK(report.bad_records == 2);

  // Every rank loads the file rank 0 wrote and rebuilds it alone: equal.
  auto loaded = load_dataset(options.output, {tokenizer->identity(), 258 + 256});
  CHECK(loaded.metadata.documents == 22);
  CHECK(loaded.metadata.template_name == "plain");
  CHECK(loaded.metadata.config_json == "{\"test\": true}");
  CHECK(loaded.metadata.patterns_hash == "none");
  // Hand-checked: record 0 is bos, "ab" (256), "bc" (257), eos; loss on target and eos.
  CHECK(std::vector<TokenId>(loaded.tokens.begin(), loaded.tokens.begin() + 4) == std::vector<TokenId>{258, 256, 257, 259});
  CHECK(std::vector<std::uint8_t>(loaded.loss_mask.begin(), loaded.loss_mask.begin() + 4) ==
        std::vector<std::uint8_t>{0, 0, 1, 1});
  // Record 2: bos "x" | "ab" "c" eos.
  CHECK(std::vector<TokenId>(loaded.tokens.begin() + 4, loaded.tokens.begin() + 9) ==
        std::vector<TokenId>{258, 'x', 256, 'c', 259});
  CHECK(std::vector<std::uint8_t>(loaded.loss_mask.begin() + 4, loaded.loss_mask.begin() + 9) ==
        std::vector<std::uint8_t>{0, 0, 1, 1, 1});
  CHECK(loaded.documents[0 * 4 + 0] == 0);
  CHECK(loaded.documents[1 * 4 + 0] == 2);

  auto self = make_self_communicator();
  if (world().rank() == 0) {
    PrepareOptions alone = options;
    alone.output = (dir / "alone.h5").string();
    prepare_dataset(alone, *tokenizer, *self);
  }
  world().barrier();
  auto reference = load_dataset((dir / "alone.h5").string());
  CHECK(loaded.tokens == reference.tokens);
  CHECK(loaded.loss_mask == reference.loss_mask);
  CHECK(loaded.segment_ids == reference.segment_ids);
  CHECK(loaded.positions == reference.positions);
  CHECK(loaded.documents == reference.documents);
  world().barrier();
}

TEST_CASE("the validation split is deterministic, disjoint from training and the same at any rank count",
          "[dataset][mpi][validation]") {
  auto dir = shared_temp_dir("validation");
  const std::string tokenizer_path = write_tiny_tokenizer(dir / ("rank" + std::to_string(world().rank())));
  auto tokenizer = load_tokenizer(tokenizer_path);
  const std::string input = (dir / "augmented.jsonl").string();
  if (world().rank() == 0) {
    std::ofstream out(input);
    out << "not JSON\n";  // record 0 is bad: the split is over usable records
    for (int i = 1; i <= 40; ++i) out << R"({"prompt": "q)" << i << R"(", "target": "a)" << std::string(i % 5, 'b') << "\"}\n";
  }
  world().barrier();
  PrepareOptions options;
  options.input = input;
  options.output = (dir / "dataset.h5").string();
  options.template_name = "plain";
  options.sequence_length = 16;
  options.validation_share = 0.1;
  options.seed = 7;
  PrepareReport report = prepare_dataset(options, *tokenizer, world());
  const DatasetFile file = load_dataset_file(options.output);
  REQUIRE(file.validation.has_value());
  const PackedDataset& training = file.training;
  const PackedDataset& validation = *file.validation;
  CHECK(training.metadata.validation_share == 0.1);
  // round(0.1 * 40) documents held out, the rest trained on; none in both.
  CHECK(validation.metadata.documents == 4);
  CHECK(training.metadata.documents == 36);
  auto records_of = [](const PackedDataset& dataset) {
    std::set<std::int64_t> records;
    for (std::size_t d = 0; d < dataset.documents.size(); d += 4) records.insert(dataset.documents[d]);
    return records;
  };
  const std::set<std::int64_t> trained = records_of(training), held = records_of(validation);
  std::vector<std::int64_t> both;
  std::set_intersection(trained.begin(), trained.end(), held.begin(), held.end(), std::back_inserter(both));
  CHECK(both.empty());
  CHECK(trained.size() + held.size() == 40);
  CHECK(trained.count(0) == 0);
  CHECK(held.count(0) == 0);
  // The held-out records are validation_records' choice.
  std::vector<std::int64_t> usable(40);
  std::iota(usable.begin(), usable.end(), std::int64_t{1});
  const std::vector<std::int64_t> chosen = validation_records(usable, 0.1, 7);
  CHECK(std::vector<std::int64_t>(held.begin(), held.end()) == chosen);
  // Packed like training's: the same sequence length, masks on the targets only.
  CHECK(validation.metadata.sequence_length == 16);
  CHECK(validation.sequences >= 1);
  CHECK(std::count(validation.loss_mask.begin(), validation.loss_mask.end(), 1) > 0);
  if (world().rank() == 0) {
    CHECK(report.validation_documents == 4);
    CHECK(report.validation_sequences == validation.sequences);
  }

  // Alone, the same file: the split does not depend on the rank count.
  auto self = make_self_communicator();
  if (world().rank() == 0) {
    PrepareOptions alone = options;
    alone.output = (dir / "alone.h5").string();
    prepare_dataset(alone, *tokenizer, *self);
  }
  world().barrier();
  const DatasetFile reference = load_dataset_file((dir / "alone.h5").string());
  REQUIRE(reference.validation.has_value());
  CHECK(reference.validation->tokens == validation.tokens);
  CHECK(reference.validation->documents == validation.documents);
  CHECK(reference.training.tokens == training.tokens);
  world().barrier();

  // The choice: independent of the records' order, another seed another choice, the count clamped.
  std::vector<std::int64_t> reversed(usable.rbegin(), usable.rend());
  CHECK(validation_records(reversed, 0.1, 7) == chosen);
  CHECK(validation_records(usable, 0.1, 8) != chosen);
  CHECK(validation_records(usable, 0.0, 7).empty());
  CHECK(validation_records({5, 9}, 0.01, 7).size() == 1);  // at least one when share > 0
  CHECK(validation_records({5, 9}, 0.5, 7).size() == 1);   // at most all but one

  SECTION("a share that leaves no validation document that fits is refused on every rank") {
    PrepareOptions tiny = options;
    tiny.input = (dir / "two.jsonl").string();
    tiny.output = (dir / "two.h5").string();
    if (world().rank() == 0) {
      std::ofstream out(tiny.input);
      out << R"({"prompt": "q", "target": "a"})" << "\n"
          << R"({"prompt": "a much longer prompt than sixteen tokens", "target": "a"})" << "\n";
    }
    world().barrier();
    tiny.overflow = "drop";
    // Whichever of the two is held out, one side has no document that fits.
    CHECK_THROWS_WITH(prepare_dataset(tiny, *tokenizer, world()),
                      Contains("dataset.validation_share 0.1") && Contains("both need at least one"));
    world().barrier();
  }
}

TEST_CASE("the chat template masks everything but the answer", "[dataset][chat]") {
  METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path);
  if (world().rank() != 0) return;
  auto tokenizer = load_tokenizer(path);
  auto dir = test::temp_dir("chat-dataset");
  {
    std::ofstream out(dir / "augmented.jsonl");
    out << R"({"prompt": "Pattern: add the parts.\nQuestion: What is 2+3?", "target": "2+3 = 5.\n#### 5"})" << "\n";
  }
  PrepareOptions options;
  options.input = (dir / "augmented.jsonl").string();
  options.output = (dir / "dataset.h5").string();
  options.sequence_length = 64;
  auto self = make_self_communicator();
  prepare_dataset(options, *tokenizer, *self);
  auto loaded = load_dataset(options.output, {tokenizer->identity(), 128256});
  std::vector<TokenId> trained, context;
  for (std::int64_t i = 0; i < 64; ++i) {
    if (loaded.segment_ids[i] < 0) continue;
    (loaded.loss_mask[i] ? trained : context).push_back(loaded.tokens[i]);
  }
  CHECK(tokenizer->decode(trained) == "2+3 = 5.\n#### 5<|eot_id|>");
  CHECK(tokenizer->decode(context) ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nPattern: add the parts.\nQuestion: What is "
        "2+3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("loading refuses wrong versions, tokenizers and truncated files", "[dataset]") {
  if (world().rank() != 0) return;
  auto dir = test::temp_dir("dataset-refusals");
  auto packed = pack_documents({document(0, {1, 2, 3}, {0, 1, 1}), document(1, {4, 5}, {0, 1})}, 8, true, 0);
  packed.metadata.tokenizer_kind = "tiktoken";
  packed.metadata.tokenizer_vocab_size = 512;
  packed.metadata.tokenizer_hash = "0123456789abcdef";
  const std::string good = (dir / "good.h5").string();
  write_dataset(good, packed);
  auto loaded = load_dataset(good, {std::string("tiktoken:512:0123456789abcdef"), 512});
  CHECK(loaded.tokens == packed.tokens);

  auto refusal = [](const std::string& path, const DatasetExpectations& expectations = {}) -> std::string {
    try {
      load_dataset(path, expectations);
    } catch (const InputError& e) {
      return e.what();
    }
    return "(loaded)";
  };
  CHECK_THAT(refusal(good, {std::string("tiktoken:512:ffffffffffffffff"), std::nullopt}),
             Contains("made with tokenizer tiktoken:512:0123456789abcdef") && Contains("ffffffffffffffff"));
  CHECK_THAT(refusal(good, {std::nullopt, 256}), Contains("vocabulary 512 exceeds the model's 256"));

  auto old = packed;
  old.metadata.format_version = 99;
  write_dataset((dir / "version.h5").string(), old);
  CHECK_THAT(refusal((dir / "version.h5").string()),
             Contains("format version 99") && Contains("metareuse prepare"));

  // A version-1 file (before validation sets) still loads, without one.
  auto version_one = packed;
  version_one.metadata.format_version = 1;
  write_dataset((dir / "version1.h5").string(), version_one);
  const DatasetFile old_file = load_dataset_file((dir / "version1.h5").string());
  CHECK(old_file.training.tokens == packed.tokens);
  CHECK_FALSE(old_file.validation.has_value());
  CHECK(old_file.training.metadata.validation_share == 0);

  auto bad_ids = packed;
  bad_ids.tokens[1] = 600;
  write_dataset((dir / "ids.h5").string(), bad_ids);
  CHECK_THAT(refusal((dir / "ids.h5").string()), Contains("token id 600 at sequence 0, position 1"));

  // Truncated: the first half, and all but the last 100 bytes, of a good file.
  auto size = std::filesystem::file_size(good);
  for (std::size_t keep : {size / 2, size - 100}) {
    std::ifstream in(good, std::ios::binary);
    std::string bytes(keep, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(dir / "truncated.h5", std::ios::binary) << bytes;
    CHECK_THAT(refusal((dir / "truncated.h5").string()), Contains("truncated.h5") && Contains("truncated or damaged"));
  }
  std::ofstream(dir / "text.h5") << "not hdf5";
  CHECK_THAT(refusal((dir / "text.h5").string()), Contains("not a readable HDF5 file"));
  CHECK_THAT(refusal((dir / "missing.h5").string()), Contains("not found"));
}

TEST_CASE("flipped bytes in a dataset's tokens fail the load naming the dataset (Fletcher32)", "[dataset]") {
  if (world().rank() != 0) return;
  auto dir = test::temp_dir("dataset-flipped");
  std::vector<DocumentTokens> documents;
  for (std::int64_t record = 0; record < 100; ++record) {
    std::vector<TokenId> ids;
    std::vector<std::uint8_t> mask;
    for (std::int64_t t = 0; t < 40; ++t) {
      ids.push_back(static_cast<TokenId>((record * 37 + t * 11) % 500));
      mask.push_back(t > 10 ? 1 : 0);
    }
    documents.push_back(document(record, ids, mask));
  }
  auto packed = pack_documents(documents, 48, false, 0);
  packed.metadata.tokenizer_kind = "tiktoken";
  packed.metadata.tokenizer_vocab_size = 512;
  packed.metadata.tokenizer_hash = "0123456789abcdef";
  const std::string path = (dir / "flipped.h5").string();
  write_dataset(path, packed);
  REQUIRE(load_dataset(path).tokens == packed.tokens);
  REQUIRE(test::flip_chunk_bytes(path, "tokens") > 8);
  CHECK_THROWS_WITH(load_dataset(path), Contains("dataset 'tokens'") && Contains("Fletcher32"));
}

TEST_CASE("a dataset write that fails (file-size limit) names the file and keeps the previous one", "[dataset]") {
  if (world().rank() != 0) return;
  auto dir = test::temp_dir("dataset-full");
  std::vector<DocumentTokens> documents;
  for (std::int64_t record = 0; record < 400; ++record) {
    std::vector<TokenId> ids;
    for (std::int64_t t = 0; t < 60; ++t) ids.push_back(static_cast<TokenId>((record * 7919 + t * 104729) % 509));
    documents.push_back(document(record, ids, std::vector<std::uint8_t>(ids.size(), 1)));
  }
  auto small = pack_documents({document(0, {1, 2, 3}, {0, 1, 1})}, 8, false, 0);
  auto large = pack_documents(documents, 64, false, 0);
  for (auto* dataset : {&small, &large}) {
    dataset->metadata.tokenizer_kind = "tiktoken";
    dataset->metadata.tokenizer_vocab_size = 512;
    dataset->metadata.tokenizer_hash = "0123456789abcdef";
  }
  const std::string path = (dir / "dataset.h5").string();
  write_dataset(path, small);
  const auto previous_size = std::filesystem::file_size(path);

  rlimit saved_limit{};
  getrlimit(RLIMIT_FSIZE, &saved_limit);
  auto saved_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit limit = saved_limit;
  limit.rlim_cur = 16 * 1024;  // the large dataset needs far more (checked below)
  setrlimit(RLIMIT_FSIZE, &limit);
  std::string message;
  try {
    write_dataset(path, large);
  } catch (const Error& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved_limit);
  signal(SIGXFSZ, saved_handler);
  CHECK_THAT(message, Contains(path) && Contains("cannot write"));
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));
  CHECK(std::filesystem::file_size(path) == previous_size);
  CHECK(load_dataset(path).tokens == small.tokens);
  // Without the limit the same write succeeds and is larger than the limit.
  write_dataset(path, large);
  CHECK(std::filesystem::file_size(path) > 16 * 1024);
}

TEST_CASE("the sampler covers every sample once per epoch, disjoint across ranks, and resumes exactly",
          "[sampler][mpi]") {
  const int rank = world().rank(), ranks = world().size();
  for (std::int64_t samples : {0, 1, 10, 11, 12, 101}) {
    DistributedSampler sampler(samples, rank, ranks, 42);
    std::vector<std::vector<std::int64_t>> epochs;
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
      sampler.set_epoch(epoch);
      std::vector<std::int64_t> mine;
      while (auto index = sampler.next()) mine.push_back(*index);
      CHECK(static_cast<std::int64_t>(mine.size()) == sampler.samples_this_rank());
      CHECK(static_cast<std::int64_t>(mine.size()) >= sampler.min_samples_per_rank());
      auto everyone = world().allgatherv(mine);
      std::set<std::int64_t> distinct(everyone.begin(), everyone.end());
      INFO("samples " << samples << " epoch " << epoch << " ranks " << ranks);
      CHECK(static_cast<std::int64_t>(everyone.size()) == samples);   // no overlap ...
      CHECK(static_cast<std::int64_t>(distinct.size()) == samples);   // ... and full coverage
      if (samples > 0) CHECK((*distinct.begin() == 0 && *distinct.rbegin() == samples - 1));
      epochs.push_back(everyone);
    }
    if (samples >= 10) CHECK(epochs[0] != epochs[1]);  // a new order each epoch

    // Resume mid-epoch from a saved state, in a fresh sampler.
    for (std::int64_t stop : {std::int64_t{0}, std::int64_t{2}, sampler.samples_this_rank()}) {
      DistributedSampler first(samples, rank, ranks, 42);
      first.set_epoch(1);
      for (std::int64_t i = 0; i < stop; ++i) first.next();
      SamplerState saved = first.state();
      std::vector<std::int64_t> expected;
      while (auto index = first.next()) expected.push_back(*index);
      DistributedSampler resumed(samples, rank, ranks, 7);  // another seed: the state carries the seed
      resumed.restore(saved);
      std::vector<std::int64_t> got;
      while (auto index = resumed.next()) got.push_back(*index);
      CHECK(got == expected);
      CHECK(resumed.epoch() == 1);
    }
  }
  DistributedSampler sampler(10, rank, ranks, 42);
  SamplerState other = sampler.state();
  other.ranks = ranks + 1;
  CHECK_THROWS_WITH(sampler.restore(other), Contains("saved for 10 samples on"));
}
