// The run configuration: a JSON file plus `--set section.key=value` overrides,
// checked against one schema in which every key has a type, a default and a
// one-line description. The whole config is validated before anything else runs.
#pragma once

#include <nlohmann/json.hpp>  // nlohmann::json, the config tree

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace metareuse {

enum class ConfigType { kInt, kNumber, kBool, kString, kStringList, kStringMap };

struct ConfigKey {
  std::string path;                  // dotted, "section.key"
  ConfigType type;
  nlohmann::json default_value;
  std::string description;           // one line
  std::optional<double> min;         // kInt / kNumber only
  std::optional<double> max;
  std::vector<std::string> choices;  // kString only; empty = any string
};

// Every key metareuse knows, in section order.
const std::vector<ConfigKey>& config_schema();
// nullptr when the path is not a key.
const ConfigKey* find_config_key(const std::string& path);
// The valid key closest to `path` (edit distance), for "did you mean" messages.
std::string closest_config_key(const std::string& path);
const char* config_type_name(ConfigType type);

class Config {
 public:
  // All defaults.
  Config();

  // Reads a JSON file (nested objects, `{"train": {"max_steps": 10}}`) over the
  // defaults. Unknown keys, wrong types and out-of-range values throw
  // ConfigError naming the file and key.
  static Config from_file(const std::string& path);

  // Loads `file` (when not empty), applies each "section.key=value", validates.
  static Config load(const std::string& file, const std::vector<std::string>& overrides);

  // "section.key=value". The value is read as JSON when it parses as JSON and
  // as a plain string otherwise, so `--set run.name=demo` works unquoted.
  void apply_override(const std::string& assignment);

  // Sets one key, checking its type and range.
  void set(const std::string& path, const nlohmann::json& value);

  const nlohmann::json& get_json(const std::string& path) const;
  std::int64_t get_int(const std::string& path) const;
  double get_number(const std::string& path) const;
  bool get_bool(const std::string& path) const;
  std::string get_string(const std::string& path) const;
  std::vector<std::string> get_string_list(const std::string& path) const;

  // The resolved config as nested JSON.
  const nlohmann::json& tree() const { return tree_; }
  std::string dump() const;
  // Resolved config with each key's description, for --print-config.
  std::string describe() const;
  // Writes dump() to `file`, creating parent folders.
  void write(const std::string& file) const;

  // From here on, this config and the copies made of it list every key read
  // through get_* in keys_read(). The resolve phase (run/resolve.h) builds
  // each stage's options from such a copy, so a stage's fingerprint covers
  // exactly the keys its options came from, with no list kept by hand.
  void record_reads();
  std::vector<std::string> keys_read() const;

 private:
  nlohmann::json tree_;
  std::shared_ptr<std::set<std::string>> reads_;  // null: not recording
};

// Throws ConfigError if `value` does not fit `key` (type, range, choices).
void validate_config_value(const ConfigKey& key, const nlohmann::json& value,
                           const std::string& where);

}  // namespace metareuse
