// A run folder's report: the report's inputs named by the run folder's layout.
#pragma once

#include <string>

#include "metareuse/eval/report.h"  // ReportInputs

namespace metareuse {

// The files of a run folder: <run>/metrics.jsonl, <run>/handbook.json,
// <run>/eval/eval.json, <run>/eval/answers.jsonl, <run>/config.resolved.json,
// <run>/timings.json; the title names the run (run.name, else the folder).
ReportInputs report_inputs_for_run(const std::string& run_folder);

// `metareuse report` reads a run folder: a UsageError when it is missing or a
// file, an InputError when it holds none of a run's files.
void require_run_folder(const std::string& run_folder);

// `metareuse report` (report.*; run/resolve.h's run_report_options).
struct RunReportOptions {
  std::string run_folder;  // run.out_dir
  std::string out;         // report.out, resolved: <run folder>/report.html by default
  bool watch = false;      // report.watch
  double interval = 30.0;  // report.interval, seconds
};

// Every rank, before rank 0 writes: the run folder is there (a folder a job
// holds may not have a run's files yet; one no job holds must have some,
// require_run_folder).
void check_run_report(const RunReportOptions& options);

// Rank 0: writes the report (atomically: readers see the old page or the
// new one). With `watch`, while a job holds the run folder's run.lock (one
// that has not taken it yet gets one interval to), rewrites it every
// `interval` seconds and once more when the job ends, then returns; a stop
// signal (SIGINT, SIGTERM, SIGUSR1) returns at once, the last page kept.
void run_report(const RunReportOptions& options);

}  // namespace metareuse
