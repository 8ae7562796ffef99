// Flags that are config overrides: each use appends "section.key=value", so a
// flag and its config key can never disagree.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace metareuse::cli {

// `--flag VALUE` sets `key`.
inline void add_value_flag(CLI::App& app, const std::string& flag, const std::string& key, const std::string& help,
                           std::vector<std::string>& overrides) {
  app.add_option(flag, help)
      ->type_name("VALUE")
      ->each([key, &overrides](const std::string& value) { overrides.push_back(key + "=" + value); });
}

// A repeatable `--flag VALUE` that fills the list key `key`: each use rewrites
// the one override with every value so far.
inline void add_list_flag(CLI::App& app, const std::string& flag, const std::string& key, const std::string& help,
                          std::vector<std::string>& overrides) {
  auto values = std::make_shared<std::vector<std::string>>();
  app.add_option(flag, help)->type_name("VALUE")->each([values, key, &overrides](const std::string& value) {
    values->push_back(value);
    overrides.erase(std::remove_if(overrides.begin(), overrides.end(),
                                   [&](const std::string& o) { return o.rfind(key + "=", 0) == 0; }),
                    overrides.end());
    overrides.push_back(key + "=" + nlohmann::json(*values).dump());
  });
}

}  // namespace metareuse::cli
