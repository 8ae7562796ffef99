// Ranks agree before they compute: under mpirun, ranks started with different
// configs (or different binaries) would otherwise build different models and
// crash in a collective, or wait for the watchdog. Called by the CLI once the
// runtime is up, before any other collective.
#pragma once

#include <string>

namespace metareuse {

class Communicator;

// Every rank hashes its resolved config (JSON text) and its own executable;
// two fixed-size allgathers compare them. On a mismatch every rank throws
// ConfigError naming the first differing key (or the binary) and a rank on
// each side with its value. A no-op at one rank.
void require_same_config(const std::string& config_json, Communicator& world);

}  // namespace metareuse
