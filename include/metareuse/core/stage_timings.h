// <run>/timings.json, written by `metareuse run` and shown by report.html:
//   {"stages": {name: {"finished", "seconds", "sequence"}}}
// the last time each stage ran. A skipped stage keeps its entry; "sequence"
// counts up across runs, so the report lists the stages in the order they finished.
// In core, below both: its writer (run/pipeline.cpp) is the top layer, its
// reader (eval/report.cpp) a stage, and includes point down.
#pragma once

#include <nlohmann/json.hpp>  // the file format

#include <cstdint>
#include <map>
#include <string>

namespace metareuse {

struct StageTime {
  double seconds = 0.0;
  std::string finished;       // UTC, "2025-01-31T12:00:00Z"
  std::int64_t sequence = 0;  // 1 for the first stage that ever finished in this folder
};

struct Timings {
  std::map<std::string, StageTime> stages;  // by stage name

  // Records that `stage` just finished after `seconds`, after every stage so far.
  void record(const std::string& stage, double seconds, const std::string& finished);

  nlohmann::json to_json() const;
  // Lenient: an entry that is not an object is dropped, a missing field keeps its default.
  static Timings from_json(const nlohmann::json& document);
};

// Reads `path`; found is false when it is missing or not {"stages": {...}}.
struct TimingsFile {
  bool found = false;
  Timings timings;
};
TimingsFile read_timings(const std::string& path);
void write_timings(const Timings& timings, const std::string& path);

}  // namespace metareuse
