// HDF5 checkpoints at 1, 2 and 3 ranks: round trip, re-sharding onto another
// world size, retention, a write that fails midway (file-size limit, as on a
// full disk) leaving the previous checkpoint in place, a writer killed
// midway, and every bad-input case naming the file.
#include "torch_catch.h"

#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "metareuse/checkpoint/checkpoint.h"
#include "metareuse/core/error.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/train/optimizer.h"
#include "hdf5_faults.h"  // flip_chunk_bytes
#include "test_support.h"
#include "toy_model.h"

using namespace metareuse;
using namespace metareuse::test;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A shared folder for all ranks.
std::string shared_temp_dir(const std::string& name) {
  return test::shared_temp_dir(test::runtime().world(), name).string();
}

// A model that has taken two optimizer steps, so the moments are non-trivial.
void train_two_steps(ShardedModel& model, AdamW& optimizer) {
  LossScaler scaler(LossScalerConfig{});
  int64_t step = 0;
  for (int s = 0; s < 2; ++s) {
    sharded_loss(model, toy_batch(s));
    optimizer.step(1e-2, 1.0, scaler, step);
  }
}

AdamWConfig two_step_adamw() { return AdamWConfig{1e-2, 0.9, 0.95, 1e-8, 0.1}; }

std::vector<uint8_t> rng_bytes(int rank) { return std::vector<uint8_t>(16, static_cast<uint8_t>(rank + 1)); }

}  // namespace

TEST_CASE("a checkpoint round-trips shards, moments, metadata and RNG state", "[checkpoint]") {
  Communicator& comm = test::runtime().world();
  CheckpointOptions options;
  options.dir = shared_temp_dir("ckpt-rt");
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  AdamW optimizer(model, two_step_adamw());
  train_two_steps(model, optimizer);

  nlohmann::json meta = {{"step", 2}, {"epoch", 0}, {"sampler", {{"position", 10}}}};
  SaveResult saved = save_checkpoint(model, optimizer.state(), meta, rng_bytes(comm.rank()), options);
  REQUIRE(saved.ok);
  CHECK(fs::exists(saved.path));
  CHECK(resolve_checkpoint("auto", options.dir) == saved.path);
  CHECK(resolve_checkpoint(options.dir, "") == saved.path);

  ShardedModel restored(toy_units(), comm, torch::kCPU, torch::kFloat32);
  AdamW restored_optimizer(restored, two_step_adamw());
  std::vector<uint8_t> rng;
  nlohmann::json back = load_checkpoint(saved.path, restored, restored_optimizer.state(), &rng);
  CHECK(back["step"] == 2);
  CHECK(back["sampler"]["position"] == 10);
  CHECK(back["world_size"] == comm.size());
  CHECK(rng == rng_bytes(comm.rank()));
  for (std::size_t u = 0; u < model.size(); ++u) {
    CHECK(torch::equal(model.unit(u).master(), restored.unit(u).master()));
    CHECK(torch::equal(optimizer.exp_avg(u), restored_optimizer.exp_avg(u)));
    CHECK(torch::equal(optimizer.exp_avg_sq(u), restored_optimizer.exp_avg_sq(u)));
  }
  if (comm.rank() == 0) {
    auto params = read_checkpoint_params(saved.path);
    CHECK(params.size() == 6);
    CHECK(params.at("wte").sizes() == torch::IntArrayRef({V, C}));
  }
}

TEST_CASE("a checkpoint saved at N ranks loads onto one rank (re-sharding)", "[checkpoint]") {
  Communicator& comm = test::runtime().world();
  CheckpointOptions options;
  options.dir = shared_temp_dir("ckpt-reshard");
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  AdamW optimizer(model, two_step_adamw());
  train_two_steps(model, optimizer);
  SaveResult saved = save_checkpoint(model, optimizer.state(), {{"step", 2}}, rng_bytes(comm.rank()), options);
  REQUIRE(saved.ok);
  auto full = model.gather_full();

  if (comm.rank() == 0) {
    auto self = make_self_communicator();
    ShardedModel single(toy_units(), *self, torch::kCPU, torch::kFloat32);
    AdamW single_optimizer(single, two_step_adamw());
    std::vector<uint8_t> rng;
    load_checkpoint(saved.path, single, single_optimizer.state(), &rng);
    CHECK(rng.empty() == (comm.size() != 1));  // RNG states only restore at the same world size
    auto single_full = single.gather_full();
    for (auto& [name, value] : full) CHECK(torch::equal(single_full.at(name), value));
  }
  comm.barrier();
}

TEST_CASE("retention keeps the newest checkpoints and the latest pointer", "[checkpoint]") {
  Communicator& comm = test::runtime().world();
  CheckpointOptions options;
  options.dir = shared_temp_dir("ckpt-keep");
  options.keep_last = 2;
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  AdamW optimizer(model, AdamWConfig{});
  std::string last;
  for (int step = 1; step <= 4; ++step) {
    SaveResult saved = save_checkpoint(model, optimizer.state(), {{"step", step}}, {}, options);
    REQUIRE(saved.ok);
    last = saved.path;
  }
  if (comm.rank() == 0) {
    CHECK_FALSE(fs::exists(fs::path(options.dir) / "ckpt-00000001.h5"));
    CHECK_FALSE(fs::exists(fs::path(options.dir) / "ckpt-00000002.h5"));
    CHECK(fs::exists(fs::path(options.dir) / "ckpt-00000003.h5"));
    CHECK(resolve_checkpoint("auto", options.dir) == last);
    // A byte cap smaller than two checkpoints keeps only the newest.
    options.max_total_bytes = static_cast<int64_t>(fs::file_size(last)) + 1;
    options.keep_last = 0;
  }
  comm.barrier();
  options.max_total_bytes = static_cast<int64_t>(comm.allreduce_value<std::int64_t>(options.max_total_bytes, ReduceOp::kMax));
  options.keep_last = 0;
  SaveResult saved = save_checkpoint(model, optimizer.state(), {{"step", 5}}, {}, options);
  REQUIRE(saved.ok);
  if (comm.rank() == 0) {
    int count = 0;
    for (const auto& entry : fs::directory_iterator(options.dir)) count += entry.path().extension() == ".h5";
    CHECK(count == 1);
  }
  comm.barrier();
}

TEST_CASE("a write that fails midway (file-size limit, like a full disk) keeps the previous checkpoint", "[checkpoint]") {
  Communicator& comm = test::runtime().world();
  CheckpointOptions options;
  options.dir = shared_temp_dir("ckpt-full");
  ShardedModel model(toy_units(), comm, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  AdamW optimizer(model, AdamWConfig{});
  SaveResult first = save_checkpoint(model, optimizer.state(), {{"step", 1}}, {}, options);
  REQUIRE(first.ok);

  // Rank 0 may write at most 8 KiB per file from here on: the HDF5 writes fail
  // with EFBIG partway through, as they would with ENOSPC.
  rlimit saved_limit{};
  getrlimit(RLIMIT_FSIZE, &saved_limit);
  auto saved_handler = signal(SIGXFSZ, SIG_IGN);
  if (comm.rank() == 0) {
    rlimit small = saved_limit;
    small.rlim_cur = 8 * 1024;
    setrlimit(RLIMIT_FSIZE, &small);
  }
  SaveResult second = save_checkpoint(model, optimizer.state(), {{"step", 2}}, {}, options);
  if (comm.rank() == 0) setrlimit(RLIMIT_FSIZE, &saved_limit);
  signal(SIGXFSZ, saved_handler);

  CHECK_FALSE(second.ok);
  CHECK_FALSE(second.message.empty());
  if (comm.rank() == 0) {
    CHECK_FALSE(fs::exists(fs::path(options.dir) / "ckpt-00000002.h5"));
    CHECK_FALSE(fs::exists(fs::path(options.dir) / "ckpt-00000002.h5.tmp"));
    CHECK(resolve_checkpoint("auto", options.dir) == first.path);
    CHECK(read_checkpoint_meta(first.path)["step"] == 1);
  }
  comm.barrier();
}

TEST_CASE("a writer killed midway leaves the previous checkpoint complete and loadable", "[checkpoint]") {
  Communicator& comm = test::runtime().world();
  if (comm.size() != 1) return;  // fork() is for the single-process run only
  std::string dir = test::temp_dir("ckpt-kill").string();
  // A bigger model so a save takes long enough to be interrupted.
  std::vector<UnitLayout> units = {UnitLayout::of("big", {{"big.weight", {2048, 1024}}})};
  std::map<std::string, torch::Tensor> params = {{"big.weight", torch::randn({2048, 1024})}};
  auto self = make_self_communicator();
  ShardedModel model(units, *self, torch::kCPU, torch::kFloat32);
  model.load_full(params);
  AdamW optimizer(model, AdamWConfig{});
  CheckpointOptions options;
  options.dir = dir;
  options.keep_last = 0;
  REQUIRE(save_checkpoint(model, optimizer.state(), {{"step", 0}}, {}, options).ok);

  for (int attempt = 0; attempt < 4; ++attempt) {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      for (int step = 1;; ++step) save_checkpoint(model, optimizer.state(), {{"step", step}}, {}, options);
    }
    usleep(150000 + 70000 * attempt);
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    std::string latest = resolve_checkpoint("auto", dir);
    INFO("attempt " << attempt << ", latest " << latest);
    ShardedModel restored(units, *self, torch::kCPU, torch::kFloat32);
    AdamW restored_optimizer(restored, AdamWConfig{});
    CHECK_NOTHROW(load_checkpoint(latest, restored, restored_optimizer.state(), nullptr));
    CHECK(torch::equal(restored.unit(0).master(), model.unit(0).master()));
  }
}

TEST_CASE("bad checkpoints give clear errors naming the file", "[checkpoint]") {
  Communicator& comm = test::runtime().world();
  if (comm.rank() != 0) return;  // file checks, no collectives
  auto self = make_self_communicator();
  fs::path dir = test::temp_dir("ckpt-bad");
  ShardedModel model(toy_units(), *self, torch::kCPU, torch::kFloat32);
  model.load_full(toy_params());
  AdamW optimizer(model, AdamWConfig{});
  CheckpointOptions options;
  options.dir = dir.string();
  SaveResult good = save_checkpoint(model, optimizer.state(), {{"step", 1}}, {}, options);
  REQUIRE(good.ok);

  SECTION("flipped bytes in a tensor's data fail the load naming the tensor (Fletcher32)") {
    CheckpointVerification check = verify_checkpoint(good.path);
    CHECK(check.tensors > 0);
    CHECK(check.verified());
    // The first parameter tensor's first chunk, located through HDF5 itself.
    fs::path flipped = dir / "flipped.h5";
    fs::copy_file(good.path, flipped);
    const std::string tensor = "params/" + test::first_member(flipped, "params");
    REQUIRE(test::flip_chunk_bytes(flipped, tensor) > 8);
    CHECK_THROWS_WITH(load_checkpoint(flipped.string(), model, optimizer.state(), nullptr),
                      Contains(flipped.string()) && Contains(tensor) && Contains("Fletcher32"));
    CHECK_THROWS_WITH(verify_checkpoint(flipped.string()), Contains(tensor) && Contains("Fletcher32"));
    CHECK_THROWS_WITH(read_checkpoint_params(flipped.string()), Contains(tensor) && Contains("Fletcher32"));
  }
  SECTION("truncated file") {
    fs::path truncated = dir / "truncated.h5";
    fs::copy_file(good.path, truncated);
    fs::resize_file(truncated, fs::file_size(truncated) / 2);
    CHECK_THROWS_WITH(load_checkpoint(truncated.string(), model, optimizer.state(), nullptr), Contains(truncated.string()));
  }
  SECTION("not HDF5 at all") {
    fs::path junk = dir / "junk.h5";
    std::ofstream(junk) << "this is not a checkpoint";
    CHECK_THROWS_WITH(read_checkpoint_meta(junk.string()), Contains(junk.string()) && Contains("not an HDF5 file"));
  }
  SECTION("wrong magic or version") {
    fs::path other = dir / "other.h5";
    hid_t file = H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 5);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attribute = H5Acreate2(file, "magic", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(attribute, type, "other");
    H5Aclose(attribute);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(file);
    CHECK_THROWS_WITH(read_checkpoint_meta(other.string()), Contains(other.string()) && Contains("magic"));

    fs::path future = dir / "future.h5";
    fs::copy_file(good.path, future);
    file = H5Fopen(future.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    attribute = H5Aopen(file, "format_version", H5P_DEFAULT);
    int64_t version = 99;
    H5Awrite(attribute, H5T_NATIVE_INT64, &version);
    H5Aclose(attribute);
    H5Fclose(file);
    CHECK_THROWS_WITH(read_checkpoint_meta(future.string()), Contains("version 99"));
  }
  SECTION("a missing dataset") {
    fs::path missing = dir / "missing.h5";
    fs::copy_file(good.path, missing);
    hid_t file = H5Fopen(missing.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(file, "exp_avg/block.0.w2", H5P_DEFAULT);
    H5Fclose(file);
    CHECK_THROWS_WITH(load_checkpoint(missing.string(), model, optimizer.state(), nullptr),
                      Contains(missing.string()) && Contains("exp_avg/block.0.w2"));
  }
  SECTION("a folder without latest, and a folder where a file is expected") {
    fs::path empty = dir / "empty";
    fs::create_directories(empty);
    CHECK_THROWS_WITH(resolve_checkpoint(empty.string(), ""), Contains("no 'latest'"));
    CHECK(resolve_checkpoint("auto", empty.string()).empty());  // auto on a fresh folder: start fresh
    CHECK_THROWS_WITH(read_checkpoint_meta(empty.string()), Contains("is a directory"));
  }
  SECTION("a model of another shape") {
    std::vector<UnitLayout> wider = toy_units();
    wider[0] = UnitLayout::of("embed_head", {{"wte", {V + 1, C}}});
    ShardedModel other(wider, *self, torch::kCPU, torch::kFloat32);
    AdamW other_optimizer(other, AdamWConfig{});
    CHECK_THROWS_WITH(load_checkpoint(good.path, other, other_optimizer.state(), nullptr), Contains("params/wte") && Contains("shape"));
  }
  // Whatever happened above, the good checkpoint is untouched and loads.
  CHECK_NOTHROW(load_checkpoint(good.path, model, optimizer.state(), nullptr));
}
