// Reading a JSON Lines file that a stage wrote (metrics.jsonl, answers.jsonl)
// for display: every readable record is visited, the rest is counted.
#pragma once

#include <nlohmann/json.hpp>  // records

#include <cstdint>
#include <functional>
#include <string>

namespace metareuse {

struct JsonLinesRead {
  bool found = false;    // the file could be opened
  std::int64_t bad = 0;  // lines that are not JSON (blank lines are skipped, not bad)
};

JsonLinesRead read_json_lines(const std::string& path, const std::function<void(const nlohmann::json&)>& visit);

}  // namespace metareuse
