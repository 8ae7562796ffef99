// report.html: one self-contained page about a run (inline SVG and CSS, no
// script, nothing fetched), readable in any browser:
//   - the loss curve and the loss-scale curve (metrics.jsonl);
//   - the top patterns with their support (handbook.json);
//   - histograms of reasoning steps and generated tokens, baseline against
//     tuned (the eval's answers.jsonl);
//   - the accuracy table and relative changes (eval.json);
//   - a summary at the top (steps, loss, accuracy), and what each eval
//     column means;
//   - the run's config (config.resolved.json, by section) and timings
//     (timings.json per stage, step and answer times).
// A missing input leaves its section saying which file was not found.
#pragma once

#include <string>

namespace metareuse {

// Every input by path (a run folder's: run/run_report.h's report_inputs_for_run).
struct ReportInputs {
  std::string metrics;   // metrics.jsonl
  std::string handbook;  // handbook.json
  std::string eval;      // eval.json
  std::string answers;   // answers.jsonl (per-question records of eval)
  std::string config;    // config.resolved.json
  std::string timings;   // timings.json (stage times, written by `metareuse run`)
  std::string folder;    // the run folder, shown under the title
  std::string title = "metareuse report";
};

// The page. Bad lines in the inputs are skipped (and counted on the page).
std::string render_report_html(const ReportInputs& inputs);

// Writes the page to `path` (atomically: a temporary file, then a rename).
void write_report(const ReportInputs& inputs, const std::string& path);

}  // namespace metareuse
