// Counts the host waits for the device while it is alive: scalar reads
// (aten::_local_scalar_dense, what .item() runs) and copies from a device to
// the host. A RecordFunction callback sees every operator call, on every
// thread (CUDA's backward runs on the autograd engine's device threads).
// On the CPU no copy crosses devices, so there the count is the scalar reads.
// Not counted: the scalar reads inside at::_fused_adamw_, whose CPU kernel
// reads each state step from host memory (its CUDA kernel reads them on the
// device); they are not waits for a device.
#pragma once

#include <ATen/record_function.h>

#include <atomic>
#include <cstring>

namespace metareuse::test {

class SyncCounter {
 public:
  SyncCounter() {
    count_ = 0;
    handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&SyncCounter::on_call, &SyncCounter::on_return)
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
    if (std::strcmp(name, "aten::_fused_adamw_") == 0) {
      ++in_fused_optimizer_;
    } else if (std::strcmp(name, "aten::_local_scalar_dense") == 0) {
      if (in_fused_optimizer_ == 0) ++count_;
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

  static void on_return(const at::RecordFunction& call, at::ObserverContext*) {
    if (std::strcmp(call.name(), "aten::_fused_adamw_") == 0) --in_fused_optimizer_;
  }

  static inline std::atomic<long> count_{0};
  static inline thread_local int in_fused_optimizer_ = 0;
  at::CallbackHandle handle_;
};

}  // namespace metareuse::test
