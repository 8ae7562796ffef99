// The one check for every CUDA runtime and NCCL call: records the call, file,
// line and rank, and throws metareuse::Error. Private to src/distributed, and only
// compiled with METAREUSE_WITH_NCCL.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

namespace metareuse::distributed_detail {

[[noreturn]] void throw_gpu_error(const char* library, int code, const char* text, const char* call, const char* file,
                                  int line);

inline void check_gpu_status(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) throw_gpu_error("CUDA", status, cudaGetErrorString(status), call, file, line);
}

inline void check_gpu_status(ncclResult_t status, const char* call, const char* file, int line) {
  if (status != ncclSuccess) throw_gpu_error("NCCL", status, ncclGetErrorString(status), call, file, line);
}

}  // namespace metareuse::distributed_detail

#define MR_CHECK_GPU(call) ::metareuse::distributed_detail::check_gpu_status((call), #call, __FILE__, __LINE__)
