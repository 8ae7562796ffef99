// The CUDA architecture check (include/metareuse/model/cuda_support.h).
#include "metareuse/model/cuda_support.h"

#include <ATen/Version.h>  // at::show_config: libtorch's build settings
#include <fmt/format.h>
#include <torch/torch.h>   // torch::cuda

#if defined(METAREUSE_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>  // at::cuda::getDeviceProperties
#include <c10/cuda/CUDAFunctions.h>  // c10::cuda::set_device
#include <ATen/detail/CUDAHooksInterface.h>  // the CUDA hooks' showConfig (arch flags)
#endif

#include <regex>
#include <set>
#include <sstream>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

// "sm_75 sm_80 ..." or NVCC's "-gencode;arch=compute_75,code=sm_75;..." -> {"sm_75", ...}.
std::vector<std::string> parse_arch_list(const std::string& text) {
  std::set<std::string> seen;
  std::vector<std::string> out;
  static const std::regex arch(R"((sm|compute)_(\d+)[a-z]?)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), arch); it != std::sregex_iterator(); ++it) {
    std::string name = (*it)[1].str() + "_" + (*it)[2].str();
    if (seen.insert(name).second) out.push_back(name);
  }
  return out;
}

std::string config_value(const std::string& config, const std::string& key) {
  std::smatch match;
  if (std::regex_search(config, match, std::regex(key + R"(=([^,\s]+))"))) return match[1].str();
  return "";
}

std::string arch_text(const std::vector<std::string>& list) {
  return list.empty() ? std::string("unknown") : fmt::format("{}", fmt::join(list, " "));
}

}  // namespace

bool arch_list_runs_on(const std::vector<std::string>& arch_list, int major, int minor) {
  const int capability = major * 10 + minor;
  for (const auto& entry : arch_list) {
    const auto underscore = entry.find('_');
    if (underscore == std::string::npos) continue;
    const std::string kind = entry.substr(0, underscore);
    int value = 0;
    try {
      value = std::stoi(entry.substr(underscore + 1));
    } catch (const std::exception&) {
      continue;
    }
    if (kind == "sm" && value / 10 == major && value % 10 <= minor) return true;
    if (kind == "compute" && value <= capability) return true;
  }
  return false;
}

namespace {

CudaBuild read_cuda_build() {
  CudaBuild build;
  const std::string config = at::show_config();
  build.cuda_version = config_value(config, "CUDA_VERSION");
  build.blas_info = config_value(config, "BLAS_INFO");
  build.torch_has_cuda = config_value(config, "USE_CUDA") == "ON";
  const bool gpu_visible = build.torch_has_cuda && torch::cuda::is_available();
#if defined(METAREUSE_WITH_CUDA)
  // With a driver and a GPU, libtorch's CUDA hooks report NVCC's flags (their
  // showConfig calls the driver, so not without one).
  if (gpu_visible) {
    try {
      build.arch_list = parse_arch_list(at::detail::getCUDAHooks().showConfig());
    } catch (const std::exception&) {
      build.arch_list.clear();
    }
  }
#endif
#if defined(METAREUSE_TORCH_ARCH_LIST)
  // Else the list CMake read from the torch Python package at configure time.
  if (build.arch_list.empty()) build.arch_list = parse_arch_list(METAREUSE_TORCH_ARCH_LIST);
#endif
  if (gpu_visible) {
#if defined(METAREUSE_WITH_CUDA)
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i) {
      const cudaDeviceProp* properties = at::cuda::getDeviceProperties(i);
      build.gpus.push_back({i, properties->name, properties->major, properties->minor});
    }
#endif
  }
  return build;
}

}  // namespace

const CudaBuild& cuda_build() {
  static const CudaBuild build = read_cuda_build();
  return build;
}

bool compute_capability_has_bf16(int major, int minor) {
  (void)minor;
  return major >= 8;
}

void use_cuda_device(int index) {
#if defined(METAREUSE_WITH_CUDA)
  try {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
  } catch (const std::exception& e) {
    throw Error(fmt::format("cannot make CUDA device {} current: {}", index, e.what()));
  }
#else
  throw Error(fmt::format("CUDA device {} asked for, but this libtorch has no CUDA", index));
#endif
}

void check_gpu_supported(int index, bool bf16) {
  const CudaBuild& build = cuda_build();
  if (index < 0 || index >= static_cast<int>(build.gpus.size())) {
    throw Error(fmt::format("CUDA device {} is not visible ({} visible)", index, build.gpus.size()));
  }
  const GpuInfo& gpu = build.gpus[index];
  const std::string advice =
      gpu.major < 7 || (gpu.major == 7 && gpu.minor < 5)
          ? "use a cu126 build of libtorch (torch <= 2.14 covers sm_50 to sm_90; README, GPU)"
          : "use a libtorch built for it (README, GPU)";
  if (bf16 && !compute_capability_has_bf16(gpu.major, gpu.minor)) {
    throw Error(fmt::format("GPU {} ({}) is sm_{}{}, and bf16 needs sm_80 or newer (Ampere); use "
                            "train.precision=fp16 (fp32 master weights with loss scaling) or fp32 on it",
                            gpu.index, gpu.name, gpu.major, gpu.minor));
  }
  if (!build.arch_list.empty()) {
    if (!arch_list_runs_on(build.arch_list, gpu.major, gpu.minor)) {
      throw Error(fmt::format("GPU {} ({}) is sm_{}{}, and this libtorch has no kernels for it (it has: {}); {}",
                              gpu.index, gpu.name, gpu.major, gpu.minor, arch_text(build.arch_list), advice));
    }
    return;
  }
  try {
    torch::Tensor probe = torch::ones({4}, torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index)));
    (void)(probe * 2).sum().item<float>();
  } catch (const std::exception& e) {
    throw Error(fmt::format("GPU {} ({}) is sm_{}{}, and a first kernel on it failed ({}); {}", gpu.index, gpu.name,
                            gpu.major, gpu.minor, e.what(), advice));
  }
}

}  // namespace metareuse
