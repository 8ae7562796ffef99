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

}  // namespace metareuse
