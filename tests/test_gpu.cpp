// The CUDA path, label gpu. Every case skips with a message when
// libtorch sees no CUDA device, so the suite passes on CPU machines.
//   1. one-rank collectives on CUDA tensors give exact results (through the
//      NCCL backend when the build has it; a single GPU cannot host two NCCL
//      ranks, so multi-rank logic is covered by the CPU/MPI tests);
//   2. the Hugging Face AdamW trajectory of ../shared/fixtures/hf_tiny_llama32
//      (test_train's reference test) in fp32 on CUDA, with its tolerances;
//   3. an fp16 trajectory on CUDA stays within 2e-2 relative of the fp32 one
//      over 20 steps on the same fixture.
#include "torch_catch.h"

#include <chrono>
#include <fstream>
#include <thread>

#include "metareuse/core/error.h"
#include "metareuse/distributed/device_communicator.h"
#include "metareuse/distributed/tensor_comm.h"
#include "metareuse/model/cuda_support.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/train/optimizer.h"
#include "metareuse/parallel/sharded_llama.h"
#include "fixture_training.h"
#include "test_support.h"

using namespace metareuse;

#define METAREUSE_SKIP_UNLESS_CUDA()                                          \
  if (!torch::cuda::is_available()) {                                         \
    METAREUSE_SKIP("libtorch sees no CUDA device (CPU build or no GPU)");      \
    return;                                                                   \
  }

using test::train_fixture;
using test::Trajectory;

TEST_CASE("one-rank collectives on CUDA tensors are exact", "[gpu]") {
  METAREUSE_SKIP_UNLESS_CUDA();
  auto comm = make_self_communicator();
  const torch::Device cuda(torch::kCUDA, 0);
  for (auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kInt64}) {
    INFO(c10::toString(dtype));
    // Small integers: exact in every dtype, so "exact" means equal.
    torch::Tensor values = torch::arange(0, 1000, torch::TensorOptions().dtype(dtype).device(cuda));  // (1000,)
    torch::Tensor reduced = values.clone();
    allreduce(*comm, reduced, ReduceOp::kSum);
    CHECK(torch::equal(reduced, values));
    torch::Tensor gathered = allgather(*comm, values);
    CHECK(gathered.device() == values.device());
    CHECK(torch::equal(gathered, values));
    torch::Tensor scattered = reduce_scatter(*comm, values, ReduceOp::kSum);
    CHECK(torch::equal(scattered, values));
    torch::Tensor broadcasted = values.clone();
    broadcast(*comm, broadcasted, 0);
    CHECK(torch::equal(broadcasted, values));
  }
  if (device_communicator_available()) {
    DeviceCommunicator& device = device_communicator(*comm, 0);
    CHECK(device.backend_name() == "nccl");
    CHECK(device.device() == 0);
    device.barrier();
    device.wait(60.0);
    // A host pointer is refused with a clear error instead of a fault in a kernel.
    float host_value = 1.0f;
    CHECK_THROWS_WITH(device.allreduce(&host_value, 1, DType::kFloat32, ReduceOp::kSum),
                      Catch::Contains("host pointer"));
    release_device_communicators();
  } else {
    WARN("this build has no NCCL backend; the CUDA collectives above ran as one-rank identities");
  }
}

// The NCCL watchdog path on one GPU: a collective queued behind about a
// second of matmuls on the compute stream is unfinished after 0.2 s, so the
// progress check (what the watchdog thread calls) must report it late, naming
// it, and abort the communicator; a check while it is younger than the bound,
// and one after a finished barrier, must stay quiet. (A real hung peer needs
// two GPUs; the CPU tests cover the same bound through poll_until.)
TEST_CASE("the NCCL progress check reports a late collective and aborts", "[gpu]") {
  METAREUSE_SKIP_UNLESS_CUDA();
  if (!device_communicator_available()) {
    METAREUSE_SKIP("this build has no NCCL backend");
    return;
  }
  auto comm = make_self_communicator();
  DeviceCommunicator& device = device_communicator(*comm, 0);
  device.barrier();
  CHECK(device.check_progress(0.1).empty());  // everything finished

  // About 1 s of fp32 work on an H100 without TF32 (8 x 8.8 TFLOP), ahead of the collective.
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto options = torch::TensorOptions().device(torch::kCUDA, 0).dtype(torch::kFloat32);
  torch::Tensor a = torch::randn({16384, 16384}, options);  // (N, N)
  torch::Tensor work = a;
  for (int i = 0; i < 8; ++i) work = torch::matmul(a, work) * 1e-3;
  torch::Tensor value = torch::ones({1024}, options);
  allreduce(*comm, value, ReduceOp::kSum);  // queued behind the matmuls
  CHECK(device.check_progress(10.0).empty());  // younger than the bound
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string late = device.check_progress(0.1);
  CHECK_THAT(late, Catch::Contains("NCCL allreduce on device 0 did not finish within") &&
                       Catch::Contains("the NCCL communicator was aborted"));
  // The communicator is gone: the next collective says so instead of hanging.
  CHECK_THROWS_WITH(allreduce(*comm, value, ReduceOp::kSum), Catch::Contains("aborted earlier"));
}

TEST_CASE("without NCCL in the build, asking for a device communicator says how to get one", "[gpu]") {
  if (device_communicator_available()) {
    METAREUSE_SKIP("this build has the NCCL backend");
    return;
  }
  auto comm = make_self_communicator();
  CHECK_THROWS_WITH(device_communicator(*comm, 0), Catch::Contains("METAREUSE_WITH_NCCL=ON"));
}

TEST_CASE("the Hugging Face AdamW trajectory in fp32 on CUDA", "[gpu][reference]") {
  METAREUSE_SKIP_UNLESS_CUDA();
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  const std::string fixture = shared + "/fixtures/hf_tiny_llama32";
  // Full fp32 matmuls (no TF32), as the reference was computed.
  at::globalContext().setAllowTF32CuBLAS(false);
  auto comm = make_self_communicator();
  Trajectory run = train_fixture(fixture, *comm, torch::Device(torch::kCUDA, 0), torch::kFloat32, 6);

  nlohmann::json expected;
  std::ifstream(fixture + "/train.json") >> expected;
  for (int s = 0; s < 6; ++s) {
    INFO("step " << s);
    double expected_loss = expected["losses"][s].get<double>();
    CHECK(std::abs(run.losses[s] - expected_loss) <= 1e-4 * std::abs(expected_loss));
    double expected_norm = expected["grad_norms_before_clip"][s].get<double>();
    CHECK(std::abs(run.grad_norms[s] - expected_norm) <= 1e-4 * expected_norm);
  }
  SafetensorsFile final_params(fixture + "/train_final.safetensors");
  for (const auto& name : final_params.names()) {
    INFO(name);
    REQUIRE(run.final_parameters.count(name) == 1);
    torch::Tensor want = final_params.tensor(name, torch::kFloat32);
    double max_error = (run.final_parameters.at(name).cpu() - want).abs().max().item<double>();
    CHECK(max_error <= 1e-4);  // test_train's tolerance for the same trajectory (its comment says why)
  }
  release_device_communicators();  // NCCL goes before the CUDA runtime's teardown at exit
}

TEST_CASE("an fp16 trajectory on CUDA stays within 2e-2 of fp32 over 20 steps", "[gpu]") {
  METAREUSE_SKIP_UNLESS_CUDA();
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  const std::string fixture = shared + "/fixtures/hf_tiny_llama32";
  at::globalContext().setAllowTF32CuBLAS(false);
  auto comm = make_self_communicator();
  const torch::Device cuda(torch::kCUDA, 0);
  Trajectory fp32 = train_fixture(fixture, *comm, cuda, torch::kFloat32, 20);
  Trajectory fp16 = train_fixture(fixture, *comm, cuda, torch::kFloat16, 20);
  CHECK(fp16.skipped == 0);
  for (int s = 0; s < 20; ++s) {
    INFO("step " << s << ": fp32 " << fp32.losses[s] << ", fp16 " << fp16.losses[s]);
    CHECK(std::abs(fp16.losses[s] - fp32.losses[s]) <= 2e-2 * std::abs(fp32.losses[s]));
  }
  release_device_communicators();
}

TEST_CASE("on CUDA, SDPA picks flash on sm_80+ in fp16 and the memory-efficient kernel on sm_60", "[gpu][attention]") {
  METAREUSE_SKIP_UNLESS_CUDA();
  const CudaBuild build = cuda_build();
  REQUIRE_FALSE(build.gpus.empty());
  const GpuInfo& gpu = build.gpus[0];
  const torch::Device cuda(torch::kCUDA, 0);
  // The 3B shape's heads: H 24, KvH 8, D 128.
  for (auto dtype : {torch::kFloat16, torch::kFloat32}) {
    auto options = torch::TensorOptions().dtype(dtype).device(cuda);
    torch::Tensor query = torch::randn({1, 24, 256, 128}, options);
    torch::Tensor keys = torch::randn({1, 8, 256, 128}, options);
    torch::Tensor values = torch::randn({1, 8, 256, 128}, options);
    const std::string backend = sdpa_backend(query, keys, values);
    std::printf("SDPA on %s (sm_%d%d), %s: %s\n", gpu.name.c_str(), gpu.major, gpu.minor,
                dtype == torch::kFloat16 ? "fp16" : "fp32", backend.c_str());
    if (dtype == torch::kFloat16 && gpu.major >= 8) CHECK(backend == "flash");
    if (gpu.major == 6) CHECK(backend == "efficient");
    // And it computes what the eager path computes.
    torch::Tensor sdpa = causal_attention(query, keys, values, 0, AttentionKind::kSdpa).to(torch::kFloat32);
    torch::Tensor eager = causal_attention(query, keys, values, 0, AttentionKind::kEager).to(torch::kFloat32);
    const double error = (sdpa - eager).abs().max().item<double>() / eager.abs().max().item<double>();
    INFO("SDPA vs eager relative error " << error);
    CHECK(error <= (dtype == torch::kFloat16 ? 1e-2 : 1e-5));
  }
  // The GPU is covered by this libtorch's kernels (it is running them).
  CHECK_NOTHROW(check_gpu_supported(0));
}
