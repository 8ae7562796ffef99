// The report's inputs in a run folder (run_report.h).
#include "metareuse/run/run_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // the resolved config's run.name

#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/run/layout.h"

namespace metareuse {
namespace fs = std::filesystem;

ReportInputs report_inputs_for_run(const std::string& run_folder) {
  const RunLayout layout(run_folder);
  ReportInputs inputs;
  inputs.folder = run_folder;
  inputs.metrics = layout.metrics();
  inputs.handbook = layout.handbook();
  inputs.eval = layout.eval_file();
  inputs.answers = layout.answers();
  inputs.config = layout.resolved_config();
  inputs.timings = layout.timings();
  // The run's name from its config; the folder's name when there is none.
  std::string name;
  if (std::ifstream in(inputs.config); in) {
    const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (config.is_object() && config.contains("run") && config["run"].is_object()) {
      const nlohmann::json& run = config["run"];
      if (run.contains("name") && run["name"].is_string()) name = run["name"].get<std::string>();
    }
  }
  const fs::path folder = fs::absolute(fs::path(run_folder)).lexically_normal();
  if (name.empty()) name = folder.filename().string();
  if (name.empty()) name = folder.parent_path().filename().string();
  inputs.title = "metareuse report: " + name;
  return inputs;
}

void require_run_folder(const std::string& run_folder) {
  if (!fs::is_directory(run_folder)) {
    throw UsageError(fmt::format(fs::exists(run_folder) ? "--run '{}' is a file; give the run folder (run.out_dir)"
                                                        : "run folder '{}' does not exist{}",
                                 run_folder, looked_for(run_folder)));
  }
  // A folder that holds none of a run's files has nothing to report: an
  // empty page with exit 0 would hide a mistyped run.out_dir.
  const ReportInputs inputs = report_inputs_for_run(run_folder);
  std::error_code error;
  for (const std::string* file : {&inputs.metrics, &inputs.handbook, &inputs.eval, &inputs.config, &inputs.timings}) {
    if (fs::exists(*file, error)) return;
  }
  throw InputError(fmt::format("nothing to report in '{}': it holds none of a run's files ({}, {}, {}, {}, {}); give "
                               "the folder `metareuse run` wrote (run.out_dir)",
                               run_folder, inputs.metrics, inputs.handbook, inputs.eval, inputs.config,
                               inputs.timings));
}

}  // namespace metareuse
