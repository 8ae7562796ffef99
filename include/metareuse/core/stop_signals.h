// The signals that ask training to stop at the next step, with a checkpoint
// and exit status 3 (resumable): SIGTERM, SIGUSR1 and a first SIGINT (Ctrl-C).
// A second SIGINT aborts at once (the default action), for a user who does
// not want to wait for the checkpoint.
#pragma once

namespace metareuse {

class StopSignals {
 public:
  // Installs the handlers; the destructor restores the default actions.
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The first stop signal received since construction, or 0.
  int received() const;
  // The same, kept after the handlers are gone: a signal that arrived while a
  // stage finished its last round (eval, distill) still stops the pipeline
  // before the next stage. forget() clears it (the pipeline, as it starts).
  static int last_received();
  static void forget();
};

}  // namespace metareuse
