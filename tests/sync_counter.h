// Counts the host waits for the device while it is alive: scalar reads
// (aten::_local_scalar_dense, what .item() runs) and copies from a device to
// the host. A RecordFunction callback sees every operator call, on every
// thread (CUDA's backward runs on the autograd engine's device threads).
// On the CPU no copy crosses devices, so there the count is the scalar reads.
#pragma once

#include <ATen/record_function.h>

#include <atomic>
#include <cstring>

namespace metareuse::test {

class SyncCounter {
 public:
  SyncCounter() {
    count_ = 0;
    handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&SyncCounter::on_call)
                                        .needsInputs(true)
                                        .scopes({at::RecordScope::FUNCTION}));
  }
  ~SyncCounter() { at::removeCallback(handle_); }
  SyncCounter(const SyncCounter&) = delete;
  SyncCounter& operator=(const SyncCounter&) = delete;

  long count() const { return count_.load(); }
  void reset() { count_ = 0; }

 private:
  static std::unique_ptr<at::ObserverContext> on_call(const at::RecordFunction& call) {
    const char* name = call.name();
    if (std::strcmp(name, "aten::_local_scalar_dense") == 0) {
      ++count_;
    } else if (std::strcmp(name, "aten::copy_") == 0) {
      // copy_(self = destination, src): a device-to-host copy waits.
      auto inputs = call.inputs();
      if (inputs.size() >= 2 && inputs[0].isTensor() && inputs[1].isTensor() &&
          inputs[0].toTensor().device().is_cpu() && !inputs[1].toTensor().device().is_cpu()) {
        ++count_;
      }
    }
    return nullptr;
  }

  static inline std::atomic<long> count_{0};
  at::CallbackHandle handle_;
};

}  // namespace metareuse::test
