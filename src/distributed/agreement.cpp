#include "metareuse/distributed/agreement.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <optional>

#include "metareuse/core/error.h"
#include "metareuse/distributed/communicator.h"

namespace metareuse {
namespace {

using json = nlohmann::json;

// FNV-1a, 64 bits, written out: a stable hash (std::hash is not promised to
// be) with no dependency; collisions only cost a missed check.
std::uint64_t fnv1a(const char* data, std::size_t size, std::uint64_t hash = 1469598103934665603ULL) {
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ULL;
  }
  return hash;
}

// The running executable's bytes: the binary's version, whatever it was built from.
std::uint64_t executable_hash() {
  std::ifstream in("/proc/self/exe", std::ios::binary);
  std::uint64_t hash = 1469598103934665603ULL;
  std::string buffer(1 << 20, '\0');
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    hash = fnv1a(buffer.data(), static_cast<std::size_t>(in.gcount()), hash);
  }
  return hash;
}

// The first key (dotted path, in key order) whose value differs, with both values.
std::optional<std::string> first_difference(const json& a, const json& b, const std::string& prefix,
                                            std::string& value_a, std::string& value_b) {
  if (a.is_object() && b.is_object()) {
    json keys = json::object();
    for (auto it = a.begin(); it != a.end(); ++it) keys[it.key()] = true;
    for (auto it = b.begin(); it != b.end(); ++it) keys[it.key()] = true;
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
      const bool in_a = a.contains(it.key()), in_b = b.contains(it.key());
      if (!in_a || !in_b) {
        value_a = in_a ? a.at(it.key()).dump() : "absent";
        value_b = in_b ? b.at(it.key()).dump() : "absent";
        return path;
      }
      if (auto found = first_difference(a.at(it.key()), b.at(it.key()), path, value_a, value_b)) return found;
    }
    return std::nullopt;
  }
  if (a == b) return std::nullopt;
  value_a = a.dump();
  value_b = b.dump();
  return prefix.empty() ? std::string("(the whole config)") : prefix;
}

}  // namespace

void require_same_config(const std::string& config_json, Communicator& world) {
  if (world.size() == 1) return;
  const auto config_hashes = world.allgather_value<std::uint64_t>(fnv1a(config_json.data(), config_json.size()));
  const auto binary_hashes = world.allgather_value<std::uint64_t>(executable_hash());
  int other = -1;
  bool config_differs = false;
  for (int r = 1; r < world.size() && other < 0; ++r) {
    if (config_hashes[r] != config_hashes[0]) {
      other = r;
      config_differs = true;
    } else if (binary_hashes[r] != binary_hashes[0]) {
      other = r;
    }
  }
  if (other < 0) return;
  // Rank `other` holds both texts after this broadcast and words the message.
  const std::string reference = world.broadcast_string(config_json, 0);
  std::string message;
  if (world.rank() == other) {
    if (config_differs) {
      std::string value_0, value_other;
      auto key = first_difference(json::parse(reference, nullptr, false), json::parse(config_json, nullptr, false), "",
                                  value_0, value_other);
      message = fmt::format("the ranks were started with different configs: {} is {} on rank 0 but {} on rank {}; "
                            "start every rank with the same --config and --set",
                            key.value_or("(a key)"), value_0, value_other, other);
    } else {
      message = fmt::format("the ranks run different metareuse binaries: rank 0's executable differs from rank {}'s "
                            "(hash {:016x} vs {:016x}); install the same build on every node",
                            other, binary_hashes[0], binary_hashes[other]);
    }
  }
  throw ConfigError(world.broadcast_string(message, other));
}

}  // namespace metareuse
