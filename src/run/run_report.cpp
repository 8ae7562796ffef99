// The report's inputs in a run folder (run_report.h).
#include "metareuse/run/run_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // the resolved config's run.name

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/stop_signals.h"
#include "metareuse/core/timing.h"
#include "metareuse/run/layout.h"
#include "metareuse/run/lock.h"  // run_folder_in_use: the job writing the folder

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

void check_run_report(const RunReportOptions& options) {
  if (options.watch && fs::is_directory(options.run_folder) &&
      run_folder_in_use(RunLayout(options.run_folder).lock())) {
    return;
  }
  require_run_folder(options.run_folder);
}

namespace {

// Sleeps `seconds`, or less when a stop signal arrives (then true).
bool stopped_during(double seconds, const StopSignals& signals) {
  const Stopwatch watch;
  while (watch.seconds() < seconds) {
    if (signals.received() != 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return signals.received() != 0;
}

}  // namespace

void run_report(const RunReportOptions& options) {
  if (!options.watch) {
    write_report(report_inputs_for_run(options.run_folder), options.out);
    log_info("wrote {}", options.out);
    return;
  }
  const std::string lock = RunLayout(options.run_folder).lock();
  const StopSignals signals;
  // A job started together with the watch may not hold the lock yet.
  bool running = run_folder_in_use(lock);
  if (!running) {
    if (stopped_during(options.interval, signals)) return;
    running = run_folder_in_use(lock);
  }
  if (!running) {
    require_run_folder(options.run_folder);
    write_report(report_inputs_for_run(options.run_folder), options.out);
    log_info("wrote {} once: no job holds {}", options.out, lock);
    return;
  }
  log_info("watching {}: {} every {} s while a job holds {}", options.run_folder, options.out, options.interval, lock);
  while (running) {
    write_report(report_inputs_for_run(options.run_folder), options.out);
    if (stopped_during(options.interval, signals)) {
      log_info("stopped by signal {}; {} is the last page written", signals.received(), options.out);
      return;
    }
    running = run_folder_in_use(lock);
  }
  // The job's last metrics and eval went in before it let the lock go.
  write_report(report_inputs_for_run(options.run_folder), options.out);
  log_info("wrote {}: the job writing {} has ended", options.out, options.run_folder);
}

}  // namespace metareuse
