#include "metareuse/core/stop_signals.h"

#include <atomic>
#include <csignal>

namespace metareuse {
namespace {

std::atomic<int> g_stop_signal{0};
std::atomic<int> g_interrupts{0};

extern "C" void on_stop_signal(int signal_number) {
  if (signal_number == SIGINT && g_interrupts.fetch_add(1) > 0) {
    // The second Ctrl-C: the default action (end the process) right now.
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, signal_number);  // the first stop signal is the one reported
}

}  // namespace

StopSignals::StopSignals() {
  g_stop_signal.store(0);
  g_interrupts.store(0);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}

StopSignals::~StopSignals() {
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGUSR1, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
}

int StopSignals::received() const { return g_stop_signal.load(); }

int StopSignals::last_received() { return g_stop_signal.load(); }

void StopSignals::forget() { g_stop_signal.store(0); }

}  // namespace metareuse
