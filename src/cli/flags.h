// Flags that are config overrides: each use appends "section.key=value", so a
// flag and its config key can never disagree.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace metareuse::cli_detail {

// The flag that sets each config key (filled by add_value_flag and
// add_list_flag), so an error in a flag's value names the flag the user typed.
inline std::map<std::string, std::string>& flag_of_key() {
  static std::map<std::string, std::string> flags;
  return flags;
}

// `message` about the override `assignment` ("key=value") came from a flag:
// the "--set" it starts with becomes that flag.
inline std::string name_the_flag(const std::string& assignment, const std::string& message) {
  auto found = flag_of_key().find(assignment.substr(0, assignment.find('=')));
  if (found == flag_of_key().end() || message.rfind("--set", 0) != 0) return message;
  std::string rest = message.substr(5);
  if (rest.rfind(" '" + assignment + "'", 0) == 0) rest = rest.substr(assignment.size() + 3);
  return found->second + rest;
}

// `--flag VALUE` sets `key`. Returns the option, for CLI11's checks on the
// text as typed and for excludes().
inline CLI::Option* add_value_flag(CLI::App& app, const std::string& flag, const std::string& key,
                                   const std::string& help, std::vector<std::string>& overrides) {
  flag_of_key()[key] = flag;
  return app.add_option(flag, help)
      ->type_name("VALUE")
      ->each([key, &overrides](const std::string& value) { overrides.push_back(key + "=" + value); });
}

// `--flag` (no value) sets `key` to `value`.
inline CLI::Option* add_switch_flag(CLI::App& app, const std::string& flag, const std::string& key,
                                    const std::string& value, const std::string& help,
                                    std::vector<std::string>& overrides) {
  flag_of_key()[key] = flag;
  return app.add_flag_callback(flag, [key, value, &overrides]() { overrides.push_back(key + "=" + value); }, help);
}

// A repeatable `--flag VALUE` that fills the list key `key`: each use rewrites
// the one override with every value so far.
inline void add_list_flag(CLI::App& app, const std::string& flag, const std::string& key, const std::string& help,
                          std::vector<std::string>& overrides) {
  flag_of_key()[key] = flag;
  auto values = std::make_shared<std::vector<std::string>>();
  app.add_option(flag, help)->type_name("VALUE")->each([values, key, &overrides](const std::string& value) {
    values->push_back(value);
    overrides.erase(std::remove_if(overrides.begin(), overrides.end(),
                                   [&](const std::string& o) { return o.rfind(key + "=", 0) == 0; }),
                    overrides.end());
    overrides.push_back(key + "=" + nlohmann::json(*values).dump());
  });
}

// A whole number in [min, max], checked on the text as typed: "1e20" or
// "3.5" is not silently turned into another number, and the message reads
// "must be > 0" or "must be at most N", not CLI11's bound of the type.
inline CLI::Validator whole_number(std::int64_t min, std::int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        std::int64_t value = 0;
        const char* end = text.data() + text.size();
        auto [stop, error] = std::from_chars(text.data(), end, value);
        if (error == std::errc::result_out_of_range) return "'" + text + "' is too large; at most " + std::to_string(max);
        if (error != std::errc() || stop != end) return "'" + text + "' is not a whole number";
        if (value < min) return min == 1 ? "must be > 0, got " + text : "must be >= " + std::to_string(min) + ", got " + text;
        if (value > max) return "must be at most " + std::to_string(max) + ", got " + text;
        return "";
      },
      "INT");
}

// A number > 0 (a temperature), with a readable message.
inline CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          std::size_t used = 0;
          double value = std::stod(text, &used);
          if (used != text.size()) return "'" + text + "' is not a number";
          if (!(value > 0) || value > 1e6) return "must be > 0 (and at most 1e6), got " + text;
        } catch (const std::exception&) {
          return "'" + text + "' is not a number";
        }
        return "";
      },
      "NUMBER");
}

}  // namespace metareuse::cli_detail
