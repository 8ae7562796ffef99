// metareuse train / plan / export from the outside, on a tokenizer and
// dataset made from the bundled sample corpus: exact resume, re-sharded
// resume, the time limit and SIGUSR1 (exit 3, then resume), refusals, the
// memory plan, export, generate on a checkpoint, report --watch, and a rank
// killed mid-training.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "cli_runner.h"
#include "sample_examples.h"  // write_sample_augmented
#include "test_support.h"

using metareuse::test::run_metareuse;
using metareuse::test::run_metareuse_mpi;
using metareuse::test::read_file;
using metareuse::test::run_shell;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A sentencepiece tokenizer and an unpacked dataset from datasets/sample_reasoning.jsonl, made once.
const fs::path& fixture_dir() {
  static const fs::path dir = [] {
    fs::path d = metareuse::test::temp_dir("train-cli");
    metareuse::test::write_sample_augmented(d / "augmented.jsonl");
    auto tokenizer = run_metareuse("tokenize --train datasets/sample_reasoning.jsonl --vocab-size 400 --tokenizer " +
                                   (d / "spm.model").string());
    REQUIRE(tokenizer.status == 0);
    auto prepare = run_metareuse("prepare --input " + (d / "augmented.jsonl").string() + " --out " +
                                 (d / "dataset.h5").string() + " --tokenizer " + (d / "spm.model").string() +
                                 " --sequence-length 192 --set dataset.pack=false --set tokenizer.template=plain");
    INFO(prepare.output);
    REQUIRE(prepare.status == 0);
    return d;
  }();
  return dir;
}

// The same examples with 5% of them held out as the validation set (dataset.validation_share).
const fs::path& validation_dataset() {
  static const fs::path path = [] {
    fs::path file = fixture_dir() / "dataset-validation.h5";
    auto prepare = run_metareuse("prepare --input " + (fixture_dir() / "augmented.jsonl").string() + " --out " +
                                 file.string() + " --tokenizer " + (fixture_dir() / "spm.model").string() +
                                 " --sequence-length 192 --set dataset.pack=false --set tokenizer.template=plain "
                                 "--set dataset.validation_share=0.05");
    INFO(prepare.output);
    REQUIRE(prepare.status == 0);
    CHECK_THAT(prepare.output, Contains("validation set (dataset.validation_share 0.05): 20 document(s)"));
    return file;
  }();
  return path;
}

// The validation lines of a run's metrics.jsonl, in order.
std::vector<nlohmann::json> validation_lines_of(const fs::path& run) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto record = nlohmann::json::parse(line);
    if (record.contains("val_loss")) lines.push_back(record);
  }
  return lines;
}

std::string train_args(const fs::path& out, const std::string& extra,
                       const fs::path& dataset = fixture_dir() / "dataset.h5") {
  return "train --dataset " + dataset.string() + " --set run.out_dir=" + out.string() +
         " --set model.vocab_size=400 --set train.lr=3e-3 --set train.global_batch=6 --set train.micro_batch=1 "
         "--set train.log_every=100 " + extra;
}

// A safetensors file with input_ids int64 [1, 4] = {1, 17, 42, 99}, for `forward --ids`.
void write_input_ids(const fs::path& path) {
  std::string header = R"({"input_ids":{"dtype":"I64","shape":[1,4],"data_offsets":[0,32]}})";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream ids(path, std::ios::binary);
  uint64_t length = header.size();
  ids.write(reinterpret_cast<const char*>(&length), 8);
  ids << header;
  for (int64_t id : {1, 17, 42, 99}) ids.write(reinterpret_cast<const char*>(&id), 8);
}

std::vector<double> losses_of(const fs::path& run) {
  std::vector<double> losses;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto record = nlohmann::json::parse(line);
    if (record.contains("val_loss")) continue;  // an evaluation's line
    REQUIRE(record.at("step").get<size_t>() == losses.size() + 1);
    for (const char* key : {"epoch", "lr", "grad_norm", "loss_scale", "skipped", "tokens_per_s", "mfu"}) {
      CHECK(record.contains(key));
    }
    losses.push_back(record.at("loss").get<double>());
  }
  return losses;
}

const std::string kMpiEnv = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";

// `mpiexec -n 2 metareuse <args>` as a command line, for signal_job.sh.
std::string mpi_job(const std::string& args) {
  return "mpiexec -n 2 --oversubscribe '" + std::string(METAREUSE_BINARY) + "' " + args;
}

// tests/signal_job.sh: `job` in its own process group; once `run`'s
// metrics.jsonl has a line (or `wait_for` exists), `during` runs, then
// `signal` goes to `target` (launcher, mpirun, rank0, rank1); every wait is
// bounded (a hang is 124).
metareuse::test::CommandResult signal_job(const fs::path& run, const std::string& target, const std::string& signal,
                                          const std::string& job, const std::string& during = "",
                                          const fs::path& wait_for = {}) {
  std::string command = std::string("cd '") + METAREUSE_SOURCE_DIR + "' && " + kMpiEnv +
                        "METAREUSE_BINARY='" + METAREUSE_BINARY + "' tests/signal_job.sh '" +
                        (wait_for.empty() ? run / "metrics.jsonl" : wait_for).string() + "' " + target + " " + signal;
  if (!during.empty()) command += " --during \"" + during + "\"";
  return run_shell(command + " -- " + job);
}

// The step at which rank `rank` of 2 logged its stop, or -1.
long stop_step(const std::string& output, int rank) {
  std::smatch match;
  const std::regex line("\\[rank " + std::to_string(rank) + "/2\\] \\[warning\\] stopping at step ([0-9]+): ([^\\n]*)");
  return std::regex_search(output, match, line) ? std::stol(match[1]) : -1;
}

}  // namespace

TEST_CASE("an interrupted then resumed run has bit-identical losses", "[train][e2e]") {
  fs::path whole = metareuse::test::temp_dir("resume-whole"), parts = metareuse::test::temp_dir("resume-parts");
  const std::string constant = "--set train.lr_schedule=constant ";
  auto full = run_metareuse_mpi(2, train_args(whole, constant + "--set train.max_steps=10"));
  INFO(full.output);
  REQUIRE(full.status == 0);
  REQUIRE(run_metareuse_mpi(2, train_args(parts, constant + "--set train.max_steps=4")).status == 0);
  auto resumed = run_metareuse_mpi(2, train_args(parts, constant + "--set train.max_steps=10 --resume auto"));
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK_THAT(resumed.output, Contains("resumed from"));
  auto a = losses_of(whole), b = losses_of(parts);
  REQUIRE(a.size() == 10);
  REQUIRE(b.size() == 10);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);  // bit for bit

  SECTION("saved at 2 ranks, resumed at 3") {
    fs::path reshard = metareuse::test::temp_dir("resume-reshard");
    REQUIRE(run_metareuse_mpi(2, train_args(reshard, constant + "--set train.max_steps=4")).status == 0);
    auto three = run_metareuse_mpi(3, train_args(reshard, constant + "--set train.max_steps=10 --resume auto"));
    INFO(three.output);
    REQUIRE(three.status == 0);
    auto c = losses_of(reshard);
    REQUIRE(c.size() == 10);
    for (size_t i = 0; i < a.size(); ++i) CHECK(std::abs(a[i] - c[i]) <= 1e-5 * std::abs(a[i]));
  }
}

TEST_CASE("the time limit stops every rank at the same step with status 3, and the run resumes", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("time-limit");
  auto stopped = run_metareuse_mpi(2, train_args(run, "--set train.max_steps=100000 --set train.time_limit=8"));
  INFO(stopped.output);
  CHECK(stopped.status == 3);
  CHECK_THAT(stopped.output, Contains("time limit"));
  CHECK(fs::exists(run / "checkpoints" / "latest"));
  size_t done = losses_of(run).size();
  CHECK(done > 0);
  auto resumed = run_metareuse(train_args(run, "--set train.max_steps=" + std::to_string(done + 2) +
                                                   " --set train.time_limit=0 --resume auto"));
  INFO(resumed.output);
  CHECK(resumed.status == 0);
  CHECK(losses_of(run).size() == done + 2);
}

TEST_CASE("the validation loss is in metrics.jsonl every train.eval_every steps and the same at 1, 2 and 3 ranks",
          "[train][e2e][validation]") {
  fs::path one = metareuse::test::temp_dir("validation-1"), two = metareuse::test::temp_dir("validation-2");
  // 5 steps, every 2: after steps 2 and 4, and at the end (step 5).
  const std::string args = "--set train.max_steps=5 --set train.eval_every=2";
  auto alone = run_metareuse(train_args(one, args, validation_dataset()));
  INFO(alone.output);
  REQUIRE(alone.status == 0);
  CHECK_THAT(alone.output, Contains("validation set: 20 sequences"));
  auto pair = run_metareuse_mpi(2, train_args(two, args, validation_dataset()));
  INFO(pair.output);
  REQUIRE(pair.status == 0);
  // At 3 ranks the last global batch's worth of the 20 validation sequences (2 rows) leaves rank 2 without a row:
  // it runs a zero-weight row to stay in the units' collectives.
  fs::path three = metareuse::test::temp_dir("validation-3");
  auto trio = run_metareuse_mpi(3, train_args(three, args, validation_dataset()));
  INFO(trio.output);
  REQUIRE(trio.status == 0);
  CHECK(losses_of(one).size() == 5);
  const auto a = validation_lines_of(one), b = validation_lines_of(two), c = validation_lines_of(three);
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  REQUIRE(c.size() == 3);
  const std::vector<int> steps = {2, 4, 5};
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].at("step").get<int>() == steps[i]);
    CHECK(b[i].at("step").get<int>() == steps[i]);
    CHECK(a[i].at("val_tokens").get<int64_t>() > 0);
    CHECK(a[i].at("val_tokens") == b[i].at("val_tokens"));
    const double loss_one = a[i].at("val_loss").get<double>(), loss_two = b[i].at("val_loss").get<double>();
    CHECK(std::isfinite(loss_one));
    // The same weights (the losses agree to 1e-5 at 1 and 2 ranks) over the same sequences, summed in another order.
    CHECK(std::abs(loss_one - loss_two) <= 1e-5 * std::abs(loss_one));
    CHECK(std::abs(loss_one - c[i].at("val_loss").get<double>()) <= 1e-5 * std::abs(loss_one));
    CHECK(a[i].at("val_tokens") == c[i].at("val_tokens"));
  }
  // Training lowers the held-out loss on this corpus (lr 3e-3, a tiny model from scratch).
  CHECK(a.back().at("val_loss").get<double>() < a.front().at("val_loss").get<double>());
  // The dataset without validation sequences: train.eval_every is refused, naming both keys and the file.
  auto refused = run_metareuse(train_args(metareuse::test::temp_dir("validation-none"), "--set train.eval_every=2"));
  CHECK(refused.status != 0);
  CHECK_THAT(refused.output, Contains("train.eval_every 2") && Contains("dataset.validation_share") &&
                                 Contains("dataset.h5"));
  auto no_eval = run_metareuse(train_args(metareuse::test::temp_dir("validation-patience"),
                                          "--set train.early_stop_patience=2", validation_dataset()));
  CHECK(no_eval.status != 0);
  CHECK_THAT(no_eval.output, Contains("train.early_stop_patience 2") && Contains("train.eval_every"));
}

TEST_CASE("early stopping ends training after patience evaluations without improvement, saved, exit 0, and a "
          "resume continues the count",
          "[train][e2e][validation]") {
  fs::path run = metareuse::test::temp_dir("early-stop");
  // No drop counts as an improvement (min_delta 1e9): the first evaluation sets the best, the next two do not
  // improve it, and patience 2 stops training after the third, at step 3 of 40.
  const std::string args = "--set train.max_steps=40 --set train.eval_every=1 --set train.early_stop_min_delta=1e9 ";
  const fs::path dataset = validation_dataset();
  auto stopped = run_metareuse_mpi(2, train_args(run, args + "--set train.early_stop_patience=2", dataset));
  INFO(stopped.output);
  REQUIRE(stopped.status == 0);
  CHECK_THAT(stopped.output, Contains("early stopping at step 3"));
  CHECK_THAT(stopped.output, Contains("checkpoint (early stop) step 3"));
  CHECK(losses_of(run).size() == 3);
  auto lines = validation_lines_of(run);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].at("evaluations_without_improvement") == 0);
  CHECK(lines[2].at("evaluations_without_improvement") == 2);
  CHECK(lines[2].at("best_val_loss") == lines[0].at("val_loss"));
  REQUIRE(fs::exists(run / "checkpoints" / "latest"));
  CHECK_THAT(read_file(run / "checkpoints" / "latest"), Contains("ckpt-00000003.h5"));

  // Resumed with the same patience: the count is spent, nothing is trained.
  auto again = run_metareuse(train_args(run, args + "--set train.early_stop_patience=2 --resume auto", dataset));
  INFO(again.output);
  CHECK(again.status == 0);
  CHECK_THAT(again.output, Contains("had stopped early at step 3") && Contains("nothing to train"));
  CHECK(losses_of(run).size() == 3);
  // With one more evaluation of patience, the count goes on from 2: one step, its evaluation (the third without
  // improvement), and the stop.
  auto longer = run_metareuse(train_args(run, args + "--set train.early_stop_patience=3 --resume auto", dataset));
  INFO(longer.output);
  CHECK(longer.status == 0);
  CHECK_THAT(longer.output, Contains("train.early_stop_patience changed 2 -> 3"));
  CHECK_THAT(longer.output, Contains("early stopping at step 4"));
  CHECK(losses_of(run).size() == 4);
  lines = validation_lines_of(run);
  REQUIRE(lines.size() == 4);
  CHECK(lines[3].at("step") == 4);
  CHECK(lines[3].at("evaluations_without_improvement") == 3);
}

// No time limit unless one is given; in a Slurm job with a time limit the job's
// end (SLURM_JOB_END_TIME) less train.job_end_margin stops training with a
// checkpoint, without --signal.
TEST_CASE("train has no time limit by default, and stops before a Slurm job's end", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("job-end");
  auto plain = run_metareuse(train_args(run / "plain", "--set train.max_steps=1"));
  INFO(plain.output);
  CHECK(plain.status == 0);
  CHECK_THAT(plain.output, Contains("time budget: none"));

  // The job ends 125 s from now; with the default margin of 120 s, 5 s are left.
  const long job_end = static_cast<long>(std::time(nullptr)) + 125;
  auto slurm = run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR + "' && SLURM_JOB_END_TIME=" +
                         std::to_string(job_end) + " timeout 300 '" + METAREUSE_BINARY + "' " +
                         train_args(run / "slurm", "--set train.max_steps=100000"));
  INFO(slurm.output);
  CHECK(slurm.status == 3);
  CHECK_THAT(slurm.output, Contains("(SLURM_JOB_END_TIME), less train.job_end_margin 120 s") &&
                               Contains("time limit"));
  CHECK(fs::exists(run / "slurm" / "checkpoints" / "latest"));
  // The sooner of the two wins: a time limit of 1 s inside the same job.
  auto sooner = run_shell(std::string("cd '") + METAREUSE_SOURCE_DIR + "' && SLURM_JOB_END_TIME=" +
                          std::to_string(job_end + 3600) + " '" + METAREUSE_BINARY + "' " +
                          train_args(run / "sooner", "--set train.max_steps=100000 --set train.time_limit=1"));
  INFO(sooner.output);
  CHECK(sooner.status == 3);
  CHECK_THAT(sooner.output, Contains("time budget 1 s: train.time_limit 1 s"));
}

TEST_CASE("SIGUSR1 (Slurm's pre-timeout signal) checkpoints and exits 3", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("sigusr1");
  std::string command = std::string("cd '") + METAREUSE_SOURCE_DIR + "' && ('" + METAREUSE_BINARY + "' " +
                        train_args(run, "--set train.max_steps=100000 --set train.time_limit=0") +
                        " & pid=$!; for i in $(seq 240); do [ -s '" + (run / "metrics.jsonl").string() +
                        "' ] && break; sleep 0.5; done; kill -USR1 $pid; wait $pid)";
  auto result = run_shell(command);
  INFO(result.output);
  CHECK(result.status == 3);
  CHECK_THAT(result.output, Contains("signal 10"));
  CHECK(fs::exists(run / "checkpoints" / "latest"));
}

// The second Ctrl-C (abort at once) is tested in test_train.cpp, in-process:
// two SIGINTs sent from outside can merge into one while the first is pending.
TEST_CASE("Ctrl-C (SIGINT) checkpoints and exits 3 like SIGTERM", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("sigint");
  std::string command = std::string("cd '") + METAREUSE_SOURCE_DIR + "' && ('" + METAREUSE_BINARY + "' " +
                        train_args(run, "--set train.max_steps=100000 --set train.time_limit=0") +
                        " & pid=$!; for i in $(seq 240); do [ -s '" + (run / "metrics.jsonl").string() +
                        "' ] && break; sleep 0.5; done; kill -INT $pid; wait $pid)";
  auto result = run_shell(command);
  INFO(result.output);
  CHECK(result.status == 3);
  CHECK_THAT(result.output, Contains("signal 2 received"));
  CHECK(fs::exists(run / "checkpoints" / "latest"));
}

TEST_CASE("non-finite weights: forward fails naming the tensor, and fp32 training stops after train.max_bad_steps",
          "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("nonfinite");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=1")).status == 0);
  fs::path model = run / "hf";
  REQUIRE(run_metareuse("export --checkpoint " + (run / "checkpoints").string() + " --out " + model.string() +
                        " --dtype fp32").status == 0);
  // A NaN into model.norm.weight, located through the safetensors header.
  {
    std::fstream file(model / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    uint64_t header_size = 0;
    file.read(reinterpret_cast<char*>(&header_size), 8);
    std::string header(header_size, '\0');
    file.read(header.data(), static_cast<std::streamsize>(header_size));
    auto entry = nlohmann::json::parse(header).at("model.norm.weight");
    REQUIRE(entry.at("dtype") == "F32");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    file.seekp(static_cast<std::streamoff>(8 + header_size + entry.at("data_offsets")[0].get<uint64_t>() + 4));
    file.write(reinterpret_cast<const char*>(&nan), 4);
  }
  write_input_ids(run / "ids.safetensors");
  auto forward = run_metareuse("forward --model " + model.string() + " --ids " + (run / "ids.safetensors").string() +
                               " --out " + (run / "logits.safetensors").string());
  INFO(forward.output);
  CHECK(forward.status == 1);
  CHECK_THAT(forward.output, Contains("model.norm.weight") && Contains("non-finite"));
  CHECK_FALSE(Catch::contains(forward.output, "\"loss\": null"));
  CHECK_FALSE(fs::exists(run / "logits.safetensors"));

  fs::path bad_run = run / "bad-run";
  auto train = run_metareuse("train --dataset " + (fixture_dir() / "dataset.h5").string() + " --set run.out_dir=" +
                             bad_run.string() + " --set model.path=" + model.string() +
                             " --set train.global_batch=6 --set train.micro_batch=1 --set train.max_steps=20"
                             " --set train.max_bad_steps=2 --set train.log_every=100");
  INFO(train.output);
  CHECK(train.status == 1);
  CHECK_THAT(train.output, Contains("training stopped at step 2") && Contains("model.norm.weight") &&
                               Contains("train.max_bad_steps=2"));
}

namespace {

// Sets every value of one F32 tensor of a safetensors file, located through its header.
void fill_safetensors_tensor(const fs::path& file_path, const std::string& name, float value) {
  std::fstream file(file_path, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t header_size = 0;
  file.read(reinterpret_cast<char*>(&header_size), 8);
  std::string header(header_size, '\0');
  file.read(header.data(), static_cast<std::streamsize>(header_size));
  auto entry = nlohmann::json::parse(header).at(name);
  REQUIRE(entry.at("dtype") == "F32");
  const uint64_t begin = entry.at("data_offsets")[0].get<uint64_t>();
  const uint64_t end = entry.at("data_offsets")[1].get<uint64_t>();
  file.seekp(static_cast<std::streamoff>(8 + header_size + begin));
  for (uint64_t offset = begin; offset < end; offset += 4) file.write(reinterpret_cast<const char*>(&value), 4);
}

}  // namespace

TEST_CASE("fp16 on the CPU trains at 1 and 2 ranks: fp32 master weights, the loss scale in metrics", "[train][e2e][fp16]") {
  for (int ranks : {1, 2}) {
    INFO("ranks " << ranks);
    fs::path run = metareuse::test::temp_dir("fp16-" + std::to_string(ranks));
    const std::string args = train_args(run, "--set train.precision=fp16 --set train.max_steps=4");
    auto result = ranks == 1 ? run_metareuse(args) : run_metareuse_mpi(ranks, args);
    INFO(result.output);
    REQUIRE(result.status == 0);
    CHECK_THAT(result.output, Contains("train.precision=fp16 on the CPU"));
    std::vector<double> losses = losses_of(run);
    REQUIRE(losses.size() == 4);
    for (double loss : losses) CHECK(std::isfinite(loss));
    std::ifstream in(run / "metrics.jsonl");
    std::string line;
    std::getline(in, line);
    CHECK(nlohmann::json::parse(line).at("loss_scale").get<double>() == 65536.0);
    // The step's collective bytes (docs/scaling.md): the vote, the loss, the overflow flag and the norm
    // are the four all-reduces; nothing moves at one rank, and at two the ring's counts are symmetric.
    const nlohmann::json traffic = nlohmann::json::parse(line).at("traffic");
    CHECK(traffic.at("allreduce").at("calls").get<int>() == 4);
    if (ranks == 1) {
      CHECK(traffic.at("sent_bytes").get<std::uint64_t>() == 0);
    } else {
      CHECK(traffic.at("allgather").at("sent_bytes").get<std::uint64_t>() > 0);
      CHECK(traffic.at("reduce_scatter").at("sent_bytes").get<std::uint64_t>() > 0);
      CHECK(traffic.at("sent_bytes") == traffic.at("received_bytes"));
    }
    CHECK(fs::exists(run / "checkpoints" / "latest"));
  }
}

TEST_CASE("the demo cut to a few steps runs end to end in fp16 on the CPU at 1 and 2 ranks", "[train][e2e][fp16]") {
  for (int ranks : {1, 2}) {
    INFO("ranks " << ranks);
    fs::path run = metareuse::test::temp_dir("fp16-demo-" + std::to_string(ranks));
    const std::string args = "run --config configs/demo.json --set run.out_dir=" + run.string() +
                             " --set train.precision=fp16 --set train.max_steps=3 --set eval.limit=2"
                             " --set eval.max_new_tokens=8";
    auto result = ranks == 1 ? run_metareuse(args) : run_metareuse_mpi(ranks, args);
    INFO(result.output);
    CHECK(result.status == 0);
    CHECK(losses_of(run).size() == 3);
  }
}

TEST_CASE("an fp16 forward that overflows at the minimum loss scale stops, keeping the last good weights",
          "[train][e2e][fp16]") {
  fs::path run = metareuse::test::temp_dir("fp16-overflow");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=1")).status == 0);
  fs::path model = run / "hf";
  REQUIRE(run_metareuse("export --checkpoint " + (run / "checkpoints").string() + " --out " + model.string() +
                        " --dtype fp32").status == 0);
  // Finite weights whose final-norm output (|x| > 65504) overflows fp16 in the
  // head's matmul: every fp16 loss is NaN, while fp32 trains on.
  fill_safetensors_tensor(model / "model.safetensors", "model.norm.weight", 60000.0f);
  const std::string base = "train --dataset " + (fixture_dir() / "dataset.h5").string() +
                           " --set model.path=" + model.string() +
                           " --set train.global_batch=6 --set train.micro_batch=1 --set train.log_every=100";
  fs::path wide = run / "fp32-run";
  auto fp32 = run_metareuse(base + " --set run.out_dir=" + wide.string() + " --set train.max_steps=2");
  INFO(fp32.output);
  CHECK(fp32.status == 0);

  fs::path bad = run / "fp16-run";
  auto fp16 = run_metareuse(base + " --set run.out_dir=" + bad.string() +
                            " --set train.precision=fp16 --set train.loss_scale_initial=4 --set train.max_steps=20"
                            " --set train.max_bad_steps=2");
  INFO(fp16.output);
  CHECK(fp16.status == 1);
  // 4 -> 2 -> 1 (two skips the scaler handles), then two bad steps at the minimum.
  CHECK_THAT(fp16.output, Contains("training stopped at step 4") && Contains("train.loss_scale_min") &&
                              Contains("the weights of step 0, the last good one, are saved in"));
  REQUIRE(fs::exists(bad / "checkpoints" / "latest"));
  // The checkpoint loads, and holds the weights training started from.
  fs::path kept = run / "kept";
  auto exported = run_metareuse("export --checkpoint " + (bad / "checkpoints").string() + " --out " + kept.string() +
                                " --dtype fp32");
  INFO(exported.output);
  CHECK(exported.status == 0);
}

TEST_CASE("a config.json that claims a larger model than its weights is an error before any allocation",
          "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("claims-larger");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=1")).status == 0);
  fs::path model = run / "hf";
  REQUIRE(run_metareuse("export --checkpoint " + (run / "checkpoints").string() + " --out " + model.string() +
                        " --dtype fp32").status == 0);
  // 4e9-wide MLPs: terabytes if anything were sized from the config before
  // the weights' headers are checked against it.
  nlohmann::json config = nlohmann::json::parse(std::ifstream(model / "config.json"));
  config["intermediate_size"] = 4000000000LL;
  std::ofstream(model / "config.json") << config.dump(2);
  write_input_ids(run / "ids.safetensors");
  auto forward = run_metareuse("forward --model " + model.string() + " --ids " + (run / "ids.safetensors").string() +
                               " --out " + (run / "logits.safetensors").string());
  INFO(forward.output);
  CHECK(forward.status == 1);
  CHECK_THAT(forward.output, Contains("mlp.") && Contains("4000000000") && Contains("model.safetensors"));
  auto train = run_metareuse("train --dataset " + (fixture_dir() / "dataset.h5").string() + " --set run.out_dir=" +
                             (run / "bigger").string() + " --set model.path=" + model.string() +
                             " --set train.global_batch=6 --set train.micro_batch=1 --set train.max_steps=1");
  INFO(train.output);
  CHECK(train.status == 1);
  CHECK_THAT(train.output, Contains("mlp.") && Contains("4000000000"));
  CHECK_FALSE(Catch::contains(train.output, "allocate"));
}

// A pretrained model's embeddings mean its own tokenizer's ids: a run must not
// train a new tokenizer for it, and a mistyped model.path is "not found".
TEST_CASE("a pretrained model.path without its tokenizer, or one that is not there, is refused before any stage",
          "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("model-no-tokenizer");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=1")).status == 0);
  fs::path model = run / "hf";
  REQUIRE(run_metareuse("export --checkpoint " + (run / "checkpoints").string() + " --out " + model.string() +
                        " --dtype fp32").status == 0);
  for (const char* name : {"tokenizer.json", "tokenizer.model", "spm.model"}) fs::remove(model / name);
  REQUIRE(fs::exists(model / "model.safetensors"));

  const std::string demo = "run --config configs/demo.json --set tokenizer.train_vocab_size=400 "
                           "--set train.max_steps=1 --set eval.limit=1 --set eval.max_new_tokens=4 --set run.out_dir=";
  fs::path tuned = run / "tuned";
  auto no_tokenizer = run_metareuse(demo + tuned.string() + " --set model.path=" + model.string());
  INFO(no_tokenizer.output);
  CHECK(no_tokenizer.status == 1);
  CHECK_THAT(no_tokenizer.output, Contains("model.path " + model.string() + "'s tokenizer not found") &&
                                      Contains((model / "tokenizer.json").string()) &&
                                      Contains((model / "spm.model").string()) && Contains("tokenizer.path"));
  CHECK_FALSE(fs::exists(tuned / "tokenizer.model"));
  CHECK_FALSE(fs::exists(tuned / "checkpoints"));

  const std::string typo = (run / "hff").string();
  auto missing = run_metareuse(demo + (run / "typo").string() + " --set model.path=" + typo);
  INFO(missing.output);
  CHECK(missing.status == 1);
  CHECK_THAT(missing.output, Contains("model.path '" + typo + "' not found") && !Contains("sentencepiece") &&
                                 !Contains("Vocabulary size"));
}

TEST_CASE("resume refuses a checkpoint made for another model, naming the field", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("refuse");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=1")).status == 0);
  auto other = run_metareuse(train_args(run, "--set train.max_steps=2 --set model.preset=debug-small --resume auto"));
  CHECK(other.status == 1);
  INFO(other.output);
  CHECK_THAT(other.output, Contains("cannot resume") && Contains("model."));
  // ... and names the way out: another checkpoint folder, or the old inputs back.
  CHECK_THAT(other.output, Contains("to train afresh, give this run another checkpoint.dir") &&
                               Contains("remove " + (run / "checkpoints").string()) &&
                               Contains("restore the model, tokenizer and dataset"));
  auto missing = run_metareuse(train_args(run, "--resume " + (run / "nothing.h5").string()));
  CHECK(missing.status == 1);
  CHECK_THAT(missing.output, Contains("nothing.h5"));
}

// The checkpoint folder's files with their sizes and times, to show that nothing in it changed.
std::map<std::string, std::pair<std::uintmax_t, fs::file_time_type>> folder_state(const fs::path& folder) {
  std::map<std::string, std::pair<std::uintmax_t, fs::file_time_type>> state;
  for (const auto& entry : fs::directory_iterator(folder)) {
    state[entry.path().filename().string()] = {fs::file_size(entry.path()), fs::last_write_time(entry.path())};
  }
  return state;
}

TEST_CASE("resume continues with the same options or a longer plan, and refuses changed training options",
          "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("resume-options");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=2")).status == 0);

  auto same = run_metareuse(train_args(run, "--set train.max_steps=2 --resume auto"));
  INFO(same.output);
  CHECK(same.status == 0);
  CHECK_THAT(same.output, Contains("resumed from") && !Contains("resuming with"));

  auto longer = run_metareuse(train_args(run, "--set train.max_steps=3 --resume auto"));
  INFO(longer.output);
  CHECK(longer.status == 0);
  CHECK_THAT(longer.output, Contains("resuming with train.max_steps changed 2 -> 3"));
  CHECK(losses_of(run).size() == 3);

  // train_args trains with lr 3e-3: another lr is another training, refused before anything is written.
  const auto checkpoints = folder_state(run / "checkpoints");
  const std::string resolved = read_file(run / "config.resolved.json");
  auto other_lr = run_metareuse(train_args(run, "--set train.max_steps=4 --set train.lr=1e-3 --resume auto"));
  INFO(other_lr.output);
  CHECK(other_lr.status == 1);
  CHECK_THAT(other_lr.output, Contains("cannot resume") &&
                                  Contains("train.lr is 0.003 in the checkpoint but 0.001 in this run") &&
                                  Contains("--set run.name=") && !Contains("train.max_steps is"));
  CHECK(folder_state(run / "checkpoints") == checkpoints);
  CHECK(losses_of(run).size() == 3);
  CHECK(read_file(run / "config.resolved.json") == resolved);
}

// config.resolved.json is the config a training really used: `train --config`
// of it runs as is, and a training refused at its checks leaves it as it was.
TEST_CASE("config.resolved.json is written once training starts, never by a refused training", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("resolved-config");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=2")).status == 0);
  const fs::path resolved = run / "config.resolved.json";
  const std::string written = read_file(resolved);
  CHECK_THAT(written, Contains("\"max_steps\": 2"));

  // train.micro_batch larger than train.global_batch fails validation, before training starts.
  auto refused = run_metareuse("train --config " + resolved.string() + " --set train.micro_batch=64");
  INFO(refused.output);
  CHECK(refused.status == 1);
  CHECK_THAT(refused.output, Contains("train.micro_batch 64 is larger than train.global_batch"));
  CHECK(read_file(resolved) == written);
  // Where libtorch sees no GPU, train.device=cuda fails before training starts (on a GPU it trains).
  auto cuda = run_metareuse("train --config " + resolved.string() + " --set train.device=cuda");
  INFO(cuda.output);
  if (cuda.status != 0) {
    CHECK_THAT(cuda.output, Contains("train.device=cuda"));
    CHECK(read_file(resolved) == written);
  }

  // The file records how the training that ran was started.
  auto again = run_metareuse("train --config " + resolved.string() + " --resume auto");
  INFO(again.output);
  CHECK(again.status == 0);
  CHECK_THAT(read_file(resolved), Contains("\"resume\": \"auto\""));
}

TEST_CASE("export writes a Hugging Face folder with the checkpoint's logits", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("export");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=2")).status == 0);
  fs::path out = run / "hf";
  auto exported = run_metareuse("export --checkpoint " + (run / "checkpoints").string() + " --out " + out.string() +
                                " --dtype fp32");
  INFO(exported.output);
  REQUIRE(exported.status == 0);
  CHECK(fs::exists(out / "config.json"));
  CHECK(fs::exists(out / "model.safetensors"));
  // generation_config.json: the config's eos among its stop ids, and a pad id.
  const auto generation_config = nlohmann::json::parse(std::ifstream(out / "generation_config.json"));
  const auto model_config = nlohmann::json::parse(std::ifstream(out / "config.json"));
  const nlohmann::json& stops = generation_config.at("eos_token_id");
  if (!model_config.at("eos_token_id").is_null()) {
    CHECK((stops == model_config["eos_token_id"] ||
           (stops.is_array() && std::find(stops.begin(), stops.end(), model_config["eos_token_id"]) != stops.end())));
  }
  CHECK_FALSE(stops.is_null());
  CHECK(generation_config.at("pad_token_id").is_number_integer());
  auto generated = run_metareuse("generate --model " + out.string() + " --prompt-ids 1,5,7 --max-new-tokens 4 --greedy");
  INFO(generated.output);
  CHECK(generated.status == 0);
  CHECK_THAT(generated.output, Contains("\"ids\""));
  // Round trip: the export gives the same logits as the checkpoint it came from.
  {
    // A hand-written safetensors file with input_ids int64 [1, 6].
    std::string header = R"({"input_ids":{"dtype":"I64","shape":[1,6],"data_offsets":[0,48]}})";
    while (header.size() % 8 != 0) header += ' ';
    std::ofstream ids(run / "ids.safetensors", std::ios::binary);
    uint64_t length = header.size();
    ids.write(reinterpret_cast<const char*>(&length), 8);
    ids << header;
    for (int64_t id : {1, 17, 42, 99, 5, 250}) ids.write(reinterpret_cast<const char*>(&id), 8);
  }
  auto from_checkpoint = run_metareuse("forward --model " + (run / "checkpoints").string() + " --ids " +
                                       (run / "ids.safetensors").string() + " --out " + (run / "a.safetensors").string());
  auto from_export = run_metareuse("forward --model " + out.string() + " --ids " + (run / "ids.safetensors").string() +
                                   " --out " + (run / "b.safetensors").string());
  INFO(from_checkpoint.output << from_export.output);
  REQUIRE(from_checkpoint.status == 0);
  REQUIRE(from_export.status == 0);
  auto bytes = [](const fs::path& file) { return read_file(file); };
  CHECK(bytes(run / "a.safetensors").size() > 6 * 400 * 4);
  CHECK(bytes(run / "a.safetensors") == bytes(run / "b.safetensors"));  // identical logits and loss

  // Bounds before memory is touched: the model's positions (a bad-input class of its own).
  const int64_t positions = nlohmann::json::parse(std::ifstream(out / "config.json")).at("max_position_embeddings");
  auto too_many = run_metareuse("generate --model " + out.string() + " --prompt-ids 1,5,7 --max-new-tokens 100000");
  INFO(too_many.output);
  CHECK(too_many.status == 64);
  CHECK_THAT(too_many.output, Contains("--max-new-tokens 100000") && Contains(std::to_string(positions) + " positions"));
  std::string long_prompt = "1";
  for (int64_t i = 0; i < positions; ++i) long_prompt += ",1";
  auto too_long = run_metareuse("generate --model " + out.string() + " --prompt-ids " + long_prompt +
                                " --max-new-tokens 1");
  CHECK(too_long.status == 64);
  CHECK_THAT(too_long.output, Contains("the prompt is " + std::to_string(positions + 1) + " tokens"));
  auto micro = run_metareuse(train_args(run / "micro", "--set train.max_steps=1 --set train.global_batch=2 "
                                                       "--set train.micro_batch=4"));
  INFO(micro.output);
  CHECK(micro.status == 1);
  CHECK_THAT(micro.output, Contains("train.micro_batch 4 is larger than train.global_batch 2"));

  auto text = run_metareuse("generate --model " + out.string() + " --prompt 'Ava buys 3 apples' --tokenizer " +
                            (fixture_dir() / "spm.model").string() + " --max-new-tokens 8 --greedy");
  INFO(text.output);
  CHECK(text.status == 0);
  CHECK_THAT(text.output, Contains("\"text\""));
}

// A checkpoint brings the tokenizer and template it was trained with (its
// meta's "text"), as it does for eval; a --tokenizer that is not that one is
// refused. Text prompts come from --prompt or a --prompts file of lines.
TEST_CASE("generate on a checkpoint uses its own tokenizer, and reads a prompts file of text lines", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("generate-checkpoint");
  REQUIRE(run_metareuse(train_args(run, "--set train.max_steps=2")).status == 0);
  const std::string model = " --model " + (run / "checkpoints").string();

  auto text = run_metareuse("generate" + model + " --prompt 'Ava buys 3 apples' --max-new-tokens 6 --greedy");
  INFO(text.output);
  REQUIRE(text.status == 0);
  CHECK_THAT(text.output, Contains("\"text\""));
  // The same prompt, tokenized by hand with the checkpoint's tokenizer: the same tokens.
  const auto line_of = [](const std::string& output) {  // the first output line
    const std::string from = output.substr(output.find("{\"ids\""));
    return nlohmann::json::parse(from.substr(0, from.find('\n')));
  };
  auto explicit_tokenizer = run_metareuse("generate" + model + " --prompt 'Ava buys 3 apples' --max-new-tokens 6 "
                                          "--greedy --tokenizer " + (fixture_dir() / "spm.model").string());
  REQUIRE(explicit_tokenizer.status == 0);
  CHECK(line_of(explicit_tokenizer.output) == line_of(text.output));

  // A prompts file of text lines: one output line each, in order, the first as --prompt gave it.
  std::ofstream(run / "prompts.txt") << "Ava buys 3 apples\n\nTom has 5 pens. He gives away 2.\n";
  auto file = metareuse::test::run_metareuse_split("generate" + model + " --prompts " + (run / "prompts.txt").string() +
                                                   " --max-new-tokens 6 --greedy --batch-size 2");
  INFO(file.out << file.err);
  REQUIRE(file.status == 0);
  std::vector<nlohmann::json> lines;
  std::istringstream out(file.out);
  for (std::string line; std::getline(out, line);) lines.push_back(nlohmann::json::parse(line));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == line_of(text.output));
  CHECK(lines[1].contains("text"));
  // --chat wraps each line in the checkpoint's template (plain here: bos + prompt, the same ids).
  auto chat = run_metareuse("generate" + model + " --prompts " + (run / "prompts.txt").string() +
                            " --max-new-tokens 6 --greedy --chat");
  INFO(chat.output);
  CHECK(chat.status == 0);
  CHECK(line_of(chat.output) == lines[0]);
  // A file that mixes token ids into text lines: one line naming the file and line.
  std::ofstream(run / "mixed.txt") << "Ava buys 3 apples\n[1, 5, 7]\n";
  auto mixed = run_metareuse("generate" + model + " --prompts " + (run / "mixed.txt").string());
  CHECK(mixed.status == 1);
  CHECK_THAT(mixed.output, Contains((run / "mixed.txt").string() + ":2: a token-id line in a file of text prompts"));
  // An ids file still reads as ids, with no tokenizer needed to read it.
  std::ofstream(run / "ids.jsonl") << "[1, 5, 7]\n";
  auto ids = run_metareuse("generate" + model + " --prompts " + (run / "ids.jsonl").string() +
                           " --max-new-tokens 3 --greedy --no-stop");
  INFO(ids.output);
  CHECK(ids.status == 0);
  CHECK(line_of(ids.output)["ids"].size() == 3);

  // A tokenizer that is not the checkpoint's: refused, naming both.
  auto other = run_metareuse("tokenize --train datasets/sample_reasoning.jsonl --vocab-size 360 --tokenizer " +
                             (run / "other.model").string());
  REQUIRE(other.status == 0);
  auto wrong = run_metareuse("generate" + model + " --prompt-ids 1,5,7 --max-new-tokens 2 --tokenizer " +
                             (run / "other.model").string());
  INFO(wrong.output);
  CHECK(wrong.status == 1);
  CHECK_THAT(wrong.output, Contains("was trained with tokenizer") && Contains((run / "other.model").string()));
}

// report --watch rewrites report.html while a job holds the run folder and
// exits 0 when it ends (or on SIGTERM); the shell bounds every wait, so a
// watch that does not end fails the test instead of hanging it.
TEST_CASE("report --watch rewrites report.html while training runs and exits when it ends", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("report-watch");
  const std::string binary = std::string("'") + METAREUSE_BINARY + "'";
  const std::string script = fmt::format(
      "cd '{src}' && {bin} {train} > '{run}.train.log' 2>&1 & train=$!; "
      "for i in $(seq 600); do [ -s '{run}/run.lock' ] && break; sleep 0.1; done; "
      "timeout 120 {bin} report --watch --interval 1 --run '{run}' > '{run}.watch.log' 2>&1 & watch=$!; "
      "timeout 120 {bin} report --watch --interval 1 --run '{run}' --out '{run}/second.html' > /dev/null 2>&1 & "
      "second=$!; "
      "for i in $(seq 600); do [ -f '{run}/report.html' ] && [ -f '{run}/second.html' ] && break; sleep 0.1; done; "
      "kill -0 $train && echo 'report while training'; "
      "kill -TERM $second; wait $second; echo \"second=$?\"; "
      "wait $train; echo \"train=$?\"; wait $watch; echo \"watch=$?\"",
      fmt::arg("src", METAREUSE_SOURCE_DIR), fmt::arg("bin", binary), fmt::arg("run", run.string()),
      fmt::arg("train", train_args(run, "--set train.max_steps=100000 --set train.time_limit=6")));
  auto result = run_shell(script);
  INFO(result.output << "\n--- watch ---\n" << read_file(run.string() + ".watch.log") << "\n--- train ---\n"
                     << read_file(run.string() + ".train.log"));
  CHECK_THAT(result.output, Contains("report while training"));
  CHECK_THAT(result.output, Contains("second=0"));  // SIGTERM: exit 0
  CHECK_THAT(result.output, Contains("train=3"));   // the time limit: a resumable stop
  CHECK_THAT(result.output, Contains("watch=0"));   // not 124: it ended with the run
  CHECK_THAT(read_file(run.string() + ".watch.log"), Contains("has ended"));
  CHECK_THAT(read_file(run / "report.html"), Contains("<html"));

  // A run no job holds: written once, after one interval's wait for a job to start.
  fs::remove(run / "report.html");
  auto once = run_metareuse("report --watch --interval 1 --run " + run.string());
  INFO(once.output);
  CHECK(once.status == 0);
  CHECK_THAT(once.output, Contains("once: no job holds"));
  CHECK(fs::exists(run / "report.html"));
  auto missing = run_metareuse("report --watch --interval 1 --run " + (run / "no-such").string());
  CHECK(missing.status == 64);
  CHECK_THAT(missing.output, Contains("no-such") && Contains("does not exist"));
}

TEST_CASE("plan prints the 3B figure on 8 P100s and refuses what cannot fit", "[train][e2e]") {
  auto fits = run_metareuse("plan --set model.preset=llama3.2-3b --set train.precision=fp16 --set train.micro_batch=1 "
                            "--ranks 8 --seq 2048 --device-memory 16GiB");
  INFO(fits.output);
  CHECK(fits.status == 0);
  CHECK_THAT(fits.output, Contains("3212749824 parameters") && Contains("verdict: fits"));
  // 16 GiB holds only whole-unit recompute; 24 GiB holds selective recompute, not keeping everything.
  CHECK_THAT(fits.output, Contains("recompute: always (train.recompute=auto;"));
  auto selective = run_metareuse("plan --set model.preset=llama3.2-3b --set train.precision=fp16 --set "
                                 "train.micro_batch=1 --ranks 8 --seq 2048 --device-memory 24GiB");
  INFO(selective.output);
  CHECK(selective.status == 0);
  CHECK_THAT(selective.output, Contains("recompute: selective (train.recompute=auto;") && Contains("verdict: fits"));
  auto too_big = run_metareuse("plan --set model.preset=llama3.2-3b --set train.precision=fp16 --set "
                               "train.micro_batch=8 --ranks 1 --seq 2048 --device-memory 16GiB");
  CHECK(too_big.status == 1);
  CHECK_THAT(too_big.output, Contains("DOES NOT FIT"));
  // Without --seq the plan is for the config's own sequence length (the demo's 192, not a fixed 2048
  // that the demo's 256 positions cannot hold).
  auto demo = run_metareuse("plan --config configs/demo.json --ranks 1");
  INFO(demo.output);
  CHECK(demo.status == 0);
  CHECK_THAT(demo.output, Contains("sequence 192"));
}

TEST_CASE("plan applies train's rules: a micro batch larger than the global batch is refused", "[train][e2e]") {
  auto plan = run_metareuse("plan --set train.global_batch=2 --set train.micro_batch=4 --ranks 1");
  INFO(plan.output);
  CHECK(plan.status == 1);
  CHECK_THAT(plan.output, Contains("train.micro_batch 4 is larger than train.global_batch 2"));
}

TEST_CASE("a rank killed with SIGKILL ends the job and the last checkpoint still loads", "[train][e2e]") {
  fs::path run = metareuse::test::temp_dir("kill9");
  std::string command =
      std::string("cd '") + METAREUSE_SOURCE_DIR +
      "' && (OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpiexec -n 3 --oversubscribe '" +
      METAREUSE_BINARY + "' " +
      train_args(run, "--set train.max_steps=100000 --set train.time_limit=0 --set checkpoint.every_steps=2") +
      " & for i in $(seq 120); do [ -f '" + (run / "checkpoints" / "latest").string() +
      "' ] && break; sleep 0.5; done; sleep 1; pkill -9 -f -n 'run.out_dir=" + run.string() + "'; start=$(date +%s); wait; echo \"exited after $(( $(date +%s) - "
      "start )) s\")";
  auto result = run_shell(command);
  INFO(result.output);
  CHECK_THAT(result.output, Contains("exited after"));
  auto seconds = std::stoi(result.output.substr(result.output.rfind("exited after") + 13));
  CHECK(seconds < 60);
  REQUIRE(fs::exists(run / "checkpoints" / "latest"));
  auto resumed = run_metareuse(train_args(run, "--set train.max_steps=1 --resume auto"));
  INFO(resumed.output);
  CHECK_THAT(resumed.output, Contains("resumed from"));
}

// ---- Ranks matter: the run-folder lock and the stop signals at 2 ranks.

TEST_CASE("at 2 ranks a second job on the run folder fails at once naming host and pid, the first goes on",
          "[train][e2e][mpi]") {
  fs::path run = metareuse::test::temp_dir("lock-2ranks");
  const std::string args = train_args(run, "--set train.max_steps=100000 --set train.time_limit=0 "
                                           "--set train.progress=lines");
  const fs::path holder = run.parent_path() / (run.filename().string() + "-holder.txt");
  const fs::path second = run.parent_path() / (run.filename().string() + "-second.txt");
  // The second job runs while the first trains; then SIGTERM to the first's rank 0.
  auto first = signal_job(run, "rank0", "TERM", mpi_job(args),
                          "cat '" + (run / "run.lock").string() + "' > '" + holder.string() + "'; timeout 120 " +
                              mpi_job(args) + " > '" + second.string() + "' 2>&1");
  INFO(first.output);
  std::ifstream second_in(second);
  const std::string second_output(std::istreambuf_iterator<char>(second_in), {});
  std::ifstream holder_in(holder);
  std::string held_by;
  std::getline(holder_in, held_by);
  INFO("second job: " << second_output);
  REQUIRE_THAT(held_by, Contains("host ") && Contains(" pid "));
  CHECK_THAT(first.output, Contains("during_status=1 "));  // not 0, not 124 (timeout)
  CHECK_THAT(first.output, Contains("job_alive_after_during=1"));
  CHECK_THAT(second_output, Contains("the run folder is in use") && Contains("is held by " + held_by));
  CHECK_FALSE(Catch::contains(second_output, "training on"));  // refused before it trained
  // The first job stopped both ranks at one step, with a checkpoint and status 3;
  // its metrics hold each step once (losses_of requires steps 1, 2, ...).
  CHECK(first.status == 3);
  CHECK(stop_step(first.output, 0) > 0);
  CHECK(stop_step(first.output, 0) == stop_step(first.output, 1));
  const size_t done = losses_of(run).size();
  CHECK(static_cast<long>(done) == stop_step(first.output, 0));
  REQUIRE(fs::exists(run / "checkpoints" / "latest"));
  auto resumed = run_metareuse_mpi(2, train_args(run, "--set train.max_steps=" + std::to_string(done + 2) +
                                                          " --set train.time_limit=0 --resume auto"));
  INFO(resumed.output);
  CHECK(resumed.status == 0);
  CHECK(losses_of(run).size() == done + 2);
}

TEST_CASE("at 2 ranks SIGINT or SIGTERM to one rank or to the launcher stops both ranks with a checkpoint",
          "[train][e2e][mpi]") {
  struct Case {
    const char* name;
    const char* target;
    const char* signal;
    bool launcher;  // launch/mpirun.sh rather than a bare mpiexec
    const char* reason_on_rank0;
  };
  const std::vector<Case> cases = {
      {"SIGINT to rank 1", "rank1", "INT", false, "signal 2 received by another rank"},
      {"SIGTERM to rank 1", "rank1", "TERM", false, "signal 15 received by another rank"},
      {"Ctrl-C to launch/mpirun.sh", "launcher", "INT", true, "signal 10 received"},
      {"SIGTERM to launch/mpirun.sh", "launcher", "TERM", true, "signal 10 received"},
  };
  fs::path hosts = metareuse::test::temp_dir("stop-2ranks-hosts") / "hosts";
  std::ofstream(hosts) << "localhost slots=2\n";
  for (const Case& c : cases) {
    fs::path run = metareuse::test::temp_dir(std::string("stop-2ranks-") + c.target + c.signal + (c.launcher ? "-l" : ""));
    const std::string args = train_args(run, "--set train.max_steps=100000 --set train.time_limit=0 "
                                             "--set train.progress=lines");
    const std::string job = c.launcher ? "launch/mpirun.sh --hostfile " + hosts.string() + " --gpus-per-node 2 -- " + args
                                       : mpi_job(args);
    auto result = signal_job(run, c.target, c.signal, job);
    INFO(c.name << ": " << result.output);
    CHECK(result.status == 3);
    CHECK(stop_step(result.output, 0) > 0);
    CHECK(stop_step(result.output, 0) == stop_step(result.output, 1));
    CHECK_THAT(result.output, Contains(std::string("stopping at step ") + std::to_string(stop_step(result.output, 0)) +
                                       ": " + c.reason_on_rank0));
    CHECK(static_cast<long>(losses_of(run).size()) == stop_step(result.output, 0));
    CHECK(fs::exists(run / "checkpoints" / "latest"));
  }
}

// A bare mpirun answers SIGINT/SIGTERM itself: SIGTERM to the ranks, SIGKILL a
// second later (Open MPI's odls_base_sigkill_timeout) and status 1; README part
// 8 says so and points to launch/mpirun.sh. What holds: no hang, and whatever
// `latest` names is a complete checkpoint that resumes (the signal goes once
// the first periodic checkpoint exists: the stop's own may be cut off).
TEST_CASE("at 2 ranks Ctrl-C to a bare mpirun ends the job without a hang and leaves a loadable checkpoint",
          "[train][e2e][mpi]") {
  fs::path run = metareuse::test::temp_dir("stop-2ranks-mpirun");
  const std::string args = train_args(run, "--set train.max_steps=100000 --set train.time_limit=0 "
                                           "--set train.progress=lines --set checkpoint.every_steps=2");
  auto result = signal_job(run, "mpirun", "INT", mpi_job(args), "", run / "checkpoints" / "latest");
  INFO(result.output);
  CHECK(result.status != 0);
  CHECK(result.status != 124);
  REQUIRE(fs::exists(run / "checkpoints" / "latest"));
  std::ifstream latest(run / "checkpoints" / "latest");
  std::string name;
  std::getline(latest, name);  // ckpt-<step>.h5
  const long step = std::stol(name.substr(name.find('-') + 1));
  auto resumed = run_metareuse_mpi(2, train_args(run, "--set train.max_steps=" + std::to_string(step + 1) +
                                                          " --set train.time_limit=0 --resume auto"));
  INFO(resumed.output);
  CHECK(resumed.status == 0);
  CHECK_THAT(resumed.output, Contains("resumed from"));
}
