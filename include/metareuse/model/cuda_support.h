// Which GPUs this build's libtorch can run on. torch's cu128/cu130 builds carry
// kernels for sm_75 and newer only, cu126 builds sm_50 to sm_90 (README, GPU),
// and a GPU outside the list fails at its first kernel with "no kernel image is
// available". `metareuse info` shows the list, and training checks each rank's
// GPU against it before anything is allocated.
#pragma once

#include <string>
#include <vector>

namespace metareuse {

struct GpuInfo {
  int index = 0;
  std::string name;
  int major = 0;  // compute capability
  int minor = 0;
};

struct CudaBuild {
  bool torch_has_cuda = false;           // a CUDA libtorch
  std::string cuda_version;              // the CUDA runtime libtorch was built with, "13.0"; "" without CUDA
  std::vector<std::string> arch_list;    // "sm_75", "compute_90", ...; empty: unknown
  std::vector<GpuInfo> gpus;             // visible GPUs; empty without a driver or a GPU
  std::string blas_info;                 // libtorch's BLAS_INFO ("mkl"); "" when it does not say
};

// What the linked libtorch reports (no GPU needed, except for `gpus`). Read
// once per process (at::show_config and the device queries), then cached.
const CudaBuild& cuda_build();

// True when code built for `arch_list` runs on compute capability major.minor:
// a cubin sm_XY runs on the same major with a minor >= Y, PTX compute_XY on any
// capability >= X.Y (JIT). Torch-free and pure.
bool arch_list_runs_on(const std::vector<std::string>& arch_list, int major, int minor);

// Throws Error naming the GPU, its sm_XY, the build's list and the libtorch to
// use instead, when GPU `index` is not covered by the build's kernels. With an
// unknown list it runs one small kernel on the GPU instead and reports a
// failure the same way.
// With `bf16` (train.precision=bf16) it also refuses a GPU below sm_80, which
// has no bf16 arithmetic (P100 is sm_60: use fp16 there).
void check_gpu_supported(int index, bool bf16 = false);

// True when compute capability major.minor computes in bf16 (sm_80 and newer).
bool compute_capability_has_bf16(int major, int minor);

// Makes CUDA device `index` this process's current device, for torch and the
// CUDA runtime alike. Called once, early (the trainer's device choice), before
// any other CUDA call: later calls (the NCCL backend's included) then find the
// device already current and never switch, so no rank creates a context on
// GPU 0 by accident. Throws naming the device when it cannot be selected.
void use_cuda_device(int index);

}  // namespace metareuse
