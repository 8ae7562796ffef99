// The NCCL backend's link-and-run probe, torch-free (ctest `nccl_probe`).
//   - Without a usable GPU: creating the communicator must fail with the check
//     macro's message (call, file, line, rank), not crash. Exit 0.
//   - With a GPU: a one-rank NCCL communicator on device 0 runs barrier(),
//     i.e. a real one-element ncclAllReduce followed by the bounded wait. Exit 0.
// Anything else exits 1.
#include <cstdio>
#include <cstring>
#include <exception>

#include "metareuse/distributed/device_communicator.h"  // make_nccl_communicator

int main() {
  auto host = metareuse::make_self_communicator();
  try {
    auto device = metareuse::make_nccl_communicator(*host, 0, 60.0);
    device->barrier();
    std::printf("nccl_probe: one-rank NCCL communicator on device %d (%s) ran a barrier\n", device->device(),
                device->backend_name().c_str());
    return 0;
  } catch (const std::exception& error) {
    const char* message = error.what();
    // No GPU here: the first CUDA call must be the one reported, with its location.
    if (std::strstr(message, "CUDA call cudaGetDeviceCount") != nullptr && std::strstr(message, "rank 0") != nullptr &&
        std::strstr(message, "nccl_communicator.cpp:") != nullptr) {
      std::printf("nccl_probe: no usable GPU, and the check macro reported it as expected:\n  %s\n", message);
      return 0;
    }
    if (std::strstr(message, "does not exist (0 visible)") != nullptr) {
      std::printf("nccl_probe: no CUDA device visible, reported as expected:\n  %s\n", message);
      return 0;
    }
    std::fprintf(stderr, "nccl_probe: unexpected failure: %s\n", message);
    return 1;
  }
}
