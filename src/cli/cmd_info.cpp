// metareuse info: what this build is made of, and where each rank runs.
#include <H5public.h>      // H5get_libversion
#include <fmt/format.h>
#include <torch/torch.h>   // torch::cuda, torch::mm
#include <torch/version.h> // TORCH_VERSION

#include <fstream>
#include <iostream>
#include <string>

#include "commands.h"
#include "metareuse/core/error.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/model/cuda_support.h"

namespace metareuse::cli_detail {
namespace {

// Which BLAS library libtorch resolved to, read from the process's mappings
// after a small matmul (reference BLAS is ~20x slower than OpenBLAS), or from
// libtorch's build settings when it carries its BLAS inside.
std::string loaded_blas() {
  auto a = torch::ones({64, 64});
  (void)torch::mm(a, a);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::string found = "unknown";
  while (std::getline(maps, line)) {
    for (const char* name : {"libopenblas", "libblis", "libmkl", "libblas.so"}) {
      auto pos = line.find(name);
      if (pos != std::string::npos) {
        std::string path = line.substr(line.find('/'));
        if (found == "unknown" || std::string(name) != "libblas.so") found = path;
      }
    }
  }
  if (found == "unknown") {
    // The PyPI libtorch links MKL statically: no library of its own in the maps.
    const std::string& blas = cuda_build().blas_info;
    if (!blas.empty()) found = blas + " (linked into libtorch)";
  }
  return found;
}

}  // namespace

void info_options(CLI::App&, std::vector<std::string>&) {}

int info_run(CommandContext& context) {
  Runtime& runtime = context.runtime;
  Communicator& world = runtime.world();
  const RankLayout& layout = runtime.layout();

  std::string line = fmt::format("rank {:>3}  local {}/{}  host {}", layout.rank, layout.local_rank,
                                 layout.local_size, layout.hostname);
  std::vector<char> local(line.begin(), line.end());
  std::vector<char> all = world.allgatherv(local);
  auto lengths = world.allgather_value<std::uint64_t>(local.size());

  if (runtime.rank() != 0) return kExitOk;

  unsigned hdf5_major = 0, hdf5_minor = 0, hdf5_release = 0;
  H5get_libversion(&hdf5_major, &hdf5_minor, &hdf5_release);
#ifdef METAREUSE_WITH_NCCL
  const char* nccl = "yes";
#else
  const char* nccl = "no (configure with -DMETAREUSE_WITH_NCCL=ON and a CUDA libtorch)";
#endif
  std::cout << fmt::format("metareuse {}\n", METAREUSE_VERSION);
  std::cout << fmt::format("  libtorch     {}\n", TORCH_VERSION);
  const CudaBuild& cuda = cuda_build();
  std::cout << fmt::format("  CUDA         {}\n", cuda.torch_has_cuda ? fmt::format("libtorch built with CUDA {}", cuda.cuda_version)
                                                                    : std::string("no (a CPU-only libtorch)"));
  if (cuda.torch_has_cuda) {
    std::cout << fmt::format("  kernels for  {}\n", cuda.arch_list.empty() ? std::string("unknown")
                                                                          : fmt::format("{}", fmt::join(cuda.arch_list, " ")));
    std::cout << fmt::format("  GPUs         {}\n", cuda.gpus.empty() ? std::string("none visible") : std::to_string(cuda.gpus.size()));
    for (const GpuInfo& gpu : cuda.gpus) {
      std::string verdict = "supported";
      try {
        check_gpu_supported(gpu.index);
      } catch (const Error& e) {
        verdict = fmt::format("NOT SUPPORTED: {}", e.what());
      }
      std::cout << fmt::format("    cuda:{}  {}  sm_{}{}  {}\n", gpu.index, gpu.name, gpu.major, gpu.minor, verdict);
    }
  }
  std::cout << fmt::format("  NCCL         {}\n", nccl);
  std::cout << fmt::format("  BLAS         {}\n", loaded_blas());
  std::cout << fmt::format("  MPI          {}\n", runtime.mpi_library_version());
  std::cout << fmt::format("  HDF5         {}.{}.{}\n", hdf5_major, hdf5_minor, hdf5_release);
  std::cout << fmt::format("  torch threads {}\n", torch::get_num_threads());
  std::cout << fmt::format("ranks: {} (launcher: {}, communicator: {})\n", runtime.world_size(), layout.launcher,
                           world.backend_name());
  std::size_t offset = 0;
  for (auto length : lengths) {
    std::cout << "  " << std::string(all.data() + offset, length) << "\n";
    offset += length;
  }
  return kExitOk;
}

}  // namespace metareuse::cli_detail
