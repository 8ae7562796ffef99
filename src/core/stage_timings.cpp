#include "metareuse/core/stage_timings.h"

#include "metareuse/core/file_io.h"

#include <algorithm>
#include <fstream>

namespace metareuse {
using json = nlohmann::json;

void Timings::record(const std::string& stage, double seconds, const std::string& finished) {
  std::int64_t sequence = 0;
  for (const auto& [name, time] : stages) sequence = std::max(sequence, time.sequence);
  stages[stage] = StageTime{seconds, finished, sequence + 1};
}

json Timings::to_json() const {
  json entries = json::object();
  for (const auto& [name, time] : stages) {
    entries[name] = json{{"seconds", time.seconds}, {"finished", time.finished}, {"sequence", time.sequence}};
  }
  return json{{"stages", entries}};
}

Timings Timings::from_json(const json& document) {
  Timings timings;
  if (!document.is_object() || !document.contains("stages") || !document["stages"].is_object()) return timings;
  for (auto it = document["stages"].begin(); it != document["stages"].end(); ++it) {
    if (!it->is_object()) continue;
    StageTime time;
    time.seconds = it->value("seconds", 0.0);
    time.finished = it->value("finished", std::string());
    time.sequence = it->value("sequence", std::int64_t{0});
    timings.stages[it.key()] = time;
  }
  return timings;
}

TimingsFile read_timings(const std::string& path) {
  TimingsFile file;
  std::ifstream in(path);
  if (path.empty() || !in) return file;
  json document = json::parse(in, nullptr, false);
  if (!document.is_object() || !document.contains("stages") || !document["stages"].is_object()) return file;
  file.found = true;
  file.timings = Timings::from_json(document);
  return file;
}

void write_timings(const Timings& timings, const std::string& path) {
  write_file_atomic(path, timings.to_json().dump(2) + "\n");
}

}  // namespace metareuse
