#include "metareuse/core/json_lines.h"

#include <fstream>

namespace metareuse {

JsonLinesRead read_json_lines(const std::string& path, const std::function<void(const nlohmann::json&)>& visit) {
  JsonLinesRead read;
  std::ifstream in(path);
  if (path.empty() || !in) return read;
  read.found = true;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded()) {
      ++read.bad;
      continue;
    }
    visit(record);
  }
  return read;
}

}  // namespace metareuse
