// report.html: the page's sections, each rendered from the struct its stage
// writes (MetricsLine, Handbook, EvalFile and AnswerRecord, Timings); the charts
// are in report_svg.cpp.
#include "metareuse/eval/report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // the resolved config, shown as a tree

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "report_svg.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/stage_timings.h"  // timings.json
#include "metareuse/core/timing.h"
#include "metareuse/eval/eval_file.h"
#include "metareuse/patterns/handbook.h"
#include "metareuse/train/metrics.h"

namespace metareuse {
namespace fs = std::filesystem;
using json = nlohmann::json;
using eval_detail::ChartSeries;  // report_svg.h
using eval_detail::escape;
using eval_detail::format_number;
using eval_detail::histogram;
using eval_detail::line_chart;

namespace {

// How an eval.json entry is named in the summary: "model" and "baseline" from `metareuse eval`, any other role
// (the experiment's "reuse" and "control") by its own name.
std::string role_label(const std::string& role) {
  if (role == "model") return "Tuned model";
  if (role == "baseline") return "Baseline";
  return role;
}

// The resolved config is the config's own tree (core/config.h), shown as it is:
// read as plain JSON, not through Config, which would add every default.
std::optional<json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (path.empty() || !in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<Handbook> read_handbook_or_none(const std::string& path) {
  if (path.empty() || !fs::exists(path)) return std::nullopt;
  try {
    return read_handbook(path);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string missing(const std::string& what, const std::string& path) {
  return fmt::format("<p class=\"missing\">No {}: {} was not found.</p>", what,
                     path.empty() ? "no file given" : escape(path));
}

std::string cell(double value, bool percent = false) {
  return percent ? fmt::format("{:.1f}%", 100.0 * value) : format_number(value);
}

std::string cell(const std::optional<double>& value, bool percent = false) {
  return value ? cell(*value, percent) : std::string("&ndash;");
}

void flatten_config(const json& node, const std::string& prefix, std::ostringstream& rows) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object() && !it->empty()) {
      flatten_config(*it, key, rows);
    } else {
      rows << "<tr><td>" << escape(key) << "</td><td>" << escape(it->dump()) << "</td></tr>";
    }
  }
}

std::string format_seconds(double seconds) {
  if (seconds >= 3600) return fmt::format("{:.0f} h {:02.0f} min", std::floor(seconds / 3600), std::fmod(seconds, 3600) / 60);
  if (seconds >= 120) return fmt::format("{:.1f} min", seconds / 60);
  return fmt::format("{:.1f} s", seconds);
}

// The training curves' points.
struct Curves {
  std::vector<double> steps, losses, scales;
  std::vector<double> validation_steps, validation_losses;  // train.eval_every's evaluations
  double train_seconds = 0;
  double padding_sum = 0;  // of padding_fraction, over the lines
};

Curves curves_of(const MetricsFile& metrics) {
  Curves curves;
  for (const MetricsLine& line : metrics.lines) {
    curves.steps.push_back(static_cast<double>(line.step));
    curves.losses.push_back(line.loss);
    curves.scales.push_back(line.loss_scale);
    curves.train_seconds += line.seconds;
    curves.padding_sum += line.padding_fraction;
  }
  for (const ValidationLine& line : metrics.validation) {
    curves.validation_steps.push_back(static_cast<double>(line.step));
    curves.validation_losses.push_back(line.val_loss);
  }
  return curves;
}

// One column of the eval table: a summary figure, and its relative change when eval.json has one.
struct Column {
  const char* header;
  bool percent;
  double (*figure)(const Summary&);
  std::optional<double> (*change)(const SummaryChange&);  // nullptr: no relative change
};

const std::vector<Column>& eval_columns() {
  static const std::vector<Column> columns = {
      {"accuracy", true, [](const Summary& s) { return s.accuracy; },
       [](const SummaryChange& c) { return c.accuracy; }},
      {"accuracy, flexible", true, [](const Summary& s) { return s.accuracy_flexible; },
       [](const SummaryChange& c) { return c.accuracy_flexible; }},
      {"correct", false, [](const Summary& s) { return static_cast<double>(s.correct); }, nullptr},
      {"answered", true, [](const Summary& s) { return s.answered_rate; }, nullptr},
      {"mean tokens", false, [](const Summary& s) { return s.mean_generated_tokens; },
       [](const SummaryChange& c) { return c.mean_generated_tokens; }},
      {"median tokens", false, [](const Summary& s) { return s.median_generated_tokens; },
       [](const SummaryChange& c) { return c.median_generated_tokens; }},
      {"mean prompt tokens", false, [](const Summary& s) { return s.mean_prompt_tokens; },
       [](const SummaryChange& c) { return c.mean_prompt_tokens; }},
      {"mean total tokens", false, [](const Summary& s) { return s.mean_total_tokens; },
       [](const SummaryChange& c) { return c.mean_total_tokens; }},
      {"mean reasoning tokens", false, [](const Summary& s) { return s.mean_reasoning_tokens; },
       [](const SummaryChange& c) { return c.mean_reasoning_tokens; }},
      {"mean steps", false, [](const Summary& s) { return s.mean_reasoning_steps; },
       [](const SummaryChange& c) { return c.mean_reasoning_steps; }},
      {"pattern use", true, [](const Summary& s) { return s.pattern_use_rate; },
       [](const SummaryChange& c) { return c.pattern_use_rate; }},
      {"stopped", true, [](const Summary& s) { return s.stopped_rate; }, nullptr},
  };
  return columns;
}

void render_summary(std::ostringstream& page, const Curves& curves, const std::optional<EvalFile>& eval) {
  page << "<ul class=\"summary\">";
  if (!curves.steps.empty()) {
    page << fmt::format("<li>Training: {} optimizer steps, loss {} &rarr; {} ({} of step time).</li>",
                        curves.steps.size(), format_number(curves.losses.front()),
                        format_number(curves.losses.back()), format_seconds(curves.train_seconds));
    if (!curves.validation_losses.empty()) {
      const auto best = std::min_element(curves.validation_losses.begin(), curves.validation_losses.end());
      const std::size_t at = static_cast<std::size_t>(best - curves.validation_losses.begin());
      page << fmt::format("<li>Validation: {} evaluations, loss {} &rarr; {}, best {} at step {}.</li>",
                          curves.validation_losses.size(), format_number(curves.validation_losses.front()),
                          format_number(curves.validation_losses.back()), format_number(*best),
                          format_number(curves.validation_steps[at]));
    }
  } else {
    page << "<li>Training: no metrics.</li>";
  }
  if (eval) {
    for (const EvalModelEntry& entry : eval->models) {
      const Summary& summary = entry.summary;
      page << fmt::format("<li>{}: accuracy {} strict, {} flexible ({} and {} of {} questions), {} generated "
                          "tokens and {} reasoning steps per answer on average.</li>",
                          role_label(entry.role), cell(summary.accuracy, true), cell(summary.accuracy_flexible, true),
                          cell(static_cast<double>(summary.correct)), cell(static_cast<double>(summary.correct_flexible)),
                          cell(static_cast<double>(summary.questions)),
                          cell(summary.mean_generated_tokens), cell(summary.mean_reasoning_steps));
    }
    // The seed's claim in one line: fewer tokens and steps at the same accuracy.
    if (eval->relative_change) {
      const SummaryChange& change = *eval->relative_change;
      auto percent = [](const std::optional<double>& value) {
        return value ? fmt::format("{:+.1f}%", 100.0 * *value) : std::string("&ndash;");
      };
      std::string points = change.accuracy_points ? fmt::format("{:+.1f} points", *change.accuracy_points)
                                                  : std::string("&ndash;");
      const std::string& of = eval->relative_change_of;
      page << fmt::format("<li>{} against baseline: accuracy {}, mean generated tokens {}, mean reasoning "
                          "steps {}, pattern use {}.</li>",
                          escape(of == "model" ? std::string("Tuned") : role_label(of)), points,
                          percent(change.mean_generated_tokens), percent(change.mean_reasoning_steps),
                          percent(change.pattern_use_rate));
    }
  } else {
    page << "<li>Evaluation: none (no eval.json).</li>";
  }
  page << "</ul>";
}

void render_training(std::ostringstream& page, const Curves& curves, const MetricsFile& metrics,
                     const std::string& path) {
  page << "<h2>Training</h2>";
  if (!metrics.found) {
    page << missing("training metrics", path);
    return;
  }
  // The validation loss, when training measured one, on the same axes as the training loss.
  std::vector<ChartSeries> loss_series = {{"training loss", curves.steps, curves.losses}};
  if (!curves.validation_steps.empty()) {
    loss_series.push_back({"validation loss", curves.validation_steps, curves.validation_losses});
  }
  page << "<div class=\"charts\">" << line_chart("Loss", loss_series, "optimizer step", false)
       << line_chart("Loss scale (log scale)", curves.steps, curves.scales, "optimizer step", true) << "</div>";
  page << fmt::format("<p class=\"note\">{} steps from {}{}.", curves.steps.size(), escape(path),
                      metrics.bad > 0 ? fmt::format(" ({} unreadable lines skipped)", metrics.bad) : "");
  if (!curves.steps.empty()) {
    page << fmt::format(" Padding waste: {:.1f}% of the sequence slots held padding (mean over steps; dynamic "
                        "padding does not compute the trailing part, packing leaves little).",
                        100.0 * curves.padding_sum / static_cast<double>(curves.steps.size()));
  }
  const std::vector<double>& scales = curves.scales;
  bool constant_scale = !scales.empty() && std::all_of(scales.begin(), scales.end(), [&](double scale) {
    return scale == scales.front();
  });
  if (constant_scale) {
    page << fmt::format(" The loss scale stayed at {}: only fp16 training scales the loss (it halves on an "
                        "overflow and grows after a run of good steps).",
                        format_number(scales.front()));
  }
  page << "</p>";
}

void render_patterns(std::ostringstream& page, const std::string& path) {
  page << "<h2>Top patterns</h2>";
  std::optional<Handbook> handbook = read_handbook_or_none(path);
  if (!handbook) {
    page << missing("handbook", path);
    return;
  }
  // The handbook's order is the selection order, which is not support order
  // under coverage selection; say so, or the table looks unsorted.
  std::string selection;
  if (handbook->config.is_object() && handbook->config.contains("selection") &&
      handbook->config["selection"].is_string()) {
    selection = handbook->config["selection"].get<std::string>();
  }
  page << fmt::format("<p class=\"note\">{} patterns mined from {} records (mode {}); support is the number of "
                      "records a pattern occurs in. {}</p>",
                      handbook->patterns.size(), handbook->records, escape(handbook->mode),
                      selection == "coverage"
                          ? "Listed in selection order: each pattern adds the most records not yet covered by the "
                            "ones above it (patterns.selection = coverage), so support is not sorted."
                          : "Listed in the handbook's order.");
  page << "<table><tr><th>#</th><th>pattern</th><th>support</th><th>kind</th></tr>";
  std::size_t shown = 0;
  for (const Pattern& pattern : handbook->patterns) {
    if (++shown > 20) break;
    page << "<tr><td class=\"n\">" << shown << "</td><td>" << escape(pattern.text) << "</td><td class=\"n\">"
         << pattern.support << "</td><td>" << escape(pattern.kind) << "</td></tr>";
  }
  page << "</table>";
}

// Per entry, which behaviors its prompts carried and its answers applied (eval.json's "behaviors").
void render_behavior_tables(std::ostringstream& page, const EvalFile& eval) {
  for (const EvalModelEntry& entry : eval.models) {
    if (entry.behaviors.empty()) continue;
    page << "<h3>Behaviors: " << escape(entry.role == "model" ? std::string("tuned") : entry.role) << "</h3>"
         << "<table><tr><th>behavior</th><th>instruction</th><th>retrieved</th><th>applied</th>"
         << "<th>accuracy, applied</th><th>accuracy, not applied</th><th>reasoning tokens, applied</th>"
         << "<th>reasoning tokens, not applied</th></tr>";
    for (const BehaviorUse& use : entry.behaviors) {
      page << "<tr><td>" << escape(use.name) << "</td><td>" << escape(use.instruction) << "</td><td class=\"n\">"
           << use.retrieved << "</td><td class=\"n\">" << use.applied << "</td><td class=\"n\">"
           << cell(use.accuracy_applied, true) << "</td><td class=\"n\">" << cell(use.accuracy_not_applied, true)
           << "</td><td class=\"n\">" << cell(use.mean_reasoning_tokens_applied) << "</td><td class=\"n\">"
           << cell(use.mean_reasoning_tokens_not_applied) << "</td></tr>";
    }
    page << "</table>";
  }
}

void render_eval_table(std::ostringstream& page, const EvalFile& eval) {
  page << fmt::format("<p class=\"note\">{} questions from {}; {} decoding, at most {} new tokens; strict answer "
                      "by {}, flexible by the last number.</p>",
                      eval.questions, escape(eval.questions_file), eval.greedy ? "greedy" : "sampled",
                      eval.max_new_tokens, escape(eval.answer_rule.empty() ? std::string("####") : eval.answer_rule));
  page << "<table><tr><th>model</th><th>path</th>";
  for (const Column& column : eval_columns()) page << "<th>" << column.header << "</th>";
  page << "</tr>";
  for (const EvalModelEntry& entry : eval.models) {
    page << "<tr><td>" << escape(entry.role == "model" ? std::string("tuned") : entry.role) << "</td><td>"
         << escape(entry.path) << "</td>";
    for (const Column& column : eval_columns()) {
      page << "<td class=\"n\">" << cell(column.figure(entry.summary), column.percent) << "</td>";
    }
    page << "</tr>";
  }
  // One relative-change row per entry compared with the baseline (older files: the one relative_change).
  std::vector<std::pair<std::string, SummaryChange>> changes;
  for (const EvalModelEntry& entry : eval.models) {
    if (entry.change_vs_baseline) changes.emplace_back(entry.role, *entry.change_vs_baseline);
  }
  if (changes.empty() && eval.relative_change) changes.emplace_back("model", *eval.relative_change);
  for (const auto& [role, change] : changes) {
    page << "<tr><td>relative change</td><td>" << escape(role) << " vs baseline</td>";
    for (const Column& column : eval_columns()) {
      page << "<td class=\"n\">"
           << (column.change != nullptr ? cell(column.change(change), true) : std::string("&ndash;")) << "</td>";
    }
    page << "</tr>";
  }
  page << "</table>";
}

void render_eval(std::ostringstream& page, const std::optional<EvalFile>& eval, const std::string& path) {
  page << "<h2>Evaluation</h2>";
  if (!eval) {
    page << missing("evaluation", path);
    return;
  }
  render_eval_table(page, *eval);
  render_behavior_tables(page, *eval);
  // What the columns mean (eval.json's own definitions, then the rest).
  auto definition = [&](const char* key, const char* fallback) { return escape(eval->definition(key, fallback)); };
  page << "<dl><dt>accuracy</dt><dd>" << definition("accuracy", "the final answer equals the reference")
       << "</dd><dt>accuracy, flexible</dt><dd>"
       << definition("accuracy_flexible", "the last number in the answer equals the reference")
       << "</dd><dt>answered</dt><dd>share of answers with a strict final answer to compare</dd>"
       << "<dt>tokens</dt><dd>" << definition("generated_tokens", "tokens generated") << "</dd><dt>steps</dt><dd>"
       << definition("reasoning_steps", "sentences before the answer") << "</dd><dt>pattern use</dt><dd>"
       << definition("pattern_use_rate", "share of answers using a handbook pattern")
       << "</dd><dt>stopped</dt><dd>share of answers that ended with the stop token, not at the token budget"
       << "</dd></dl>";
  if (eval->find("baseline") == nullptr) {
    page << "<p class=\"note\">No baseline model (eval.baseline is empty): the table and the histograms show "
            "the tuned model only. Set eval.baseline to the model before fine-tuning to compare.</p>";
  }
}

void render_answers(std::ostringstream& page, const std::string& path) {
  AnswerRecords answers = read_answer_records(path);
  if (!answers.found) {
    page << missing("per-question answers", path);
    return;
  }
  std::map<std::string, std::vector<double>> answer_steps, answer_tokens;
  for (const AnswerRecord& line : answers.records) {
    answer_steps[line.model].push_back(static_cast<double>(line.reasoning_steps));
    answer_tokens[line.model].push_back(static_cast<double>(line.generated_tokens));
  }
  // Baseline first, so it is always the first colour.
  auto ordered = [](std::map<std::string, std::vector<double>>& by_role) {
    std::vector<std::pair<std::string, std::vector<double>>> series;
    if (by_role.count("baseline")) series.emplace_back("baseline", by_role["baseline"]);
    for (auto& [role, values] : by_role) {
      if (role != "baseline") series.emplace_back(role == "model" ? "tuned" : role, values);
    }
    return series;
  };
  page << "<div class=\"charts\">"
       << histogram("Reasoning steps per answer", ordered(answer_steps), "reasoning steps (sentences before ####)")
       << histogram("Generated tokens per answer", ordered(answer_tokens), "generated tokens") << "</div>";
}

void render_timings(std::ostringstream& page, const ReportInputs& inputs, double train_seconds,
                    const std::optional<EvalFile>& eval) {
  const TimingsFile timings = read_timings(inputs.timings);
  page << "<h2>Timings</h2><table><tr><th>what</th><th>time</th><th>finished</th></tr>";
  if (timings.found) {
    // In the order the stages finished ("sequence" counts up across runs).
    std::vector<std::pair<std::string, StageTime>> stages(timings.timings.stages.begin(),
                                                               timings.timings.stages.end());
    std::stable_sort(stages.begin(), stages.end(),
                     [](const auto& a, const auto& b) { return a.second.sequence < b.second.sequence; });
    for (const auto& [name, stage] : stages) {
      page << "<tr><td>stage " << escape(name) << "</td><td class=\"n\">" << format_seconds(stage.seconds)
           << "</td><td>" << escape(stage.finished) << "</td></tr>";
    }
  }
  double eval_seconds = 0;
  if (eval) {
    for (const EvalModelEntry& entry : eval->models) eval_seconds += entry.summary.seconds;
  }
  page << "<tr><td>training (sum of step times)</td><td class=\"n\">" << format_seconds(train_seconds)
       << "</td><td></td></tr>";
  page << "<tr><td>evaluation (answer times summed over ranks and models)</td><td class=\"n\">"
       << format_seconds(eval_seconds) << "</td><td></td></tr>";
  // A file without a wall clock (written by hand) reads as 0 and gets no row.
  if (eval && eval->wall_seconds > 0) {
    page << "<tr><td>evaluation wall clock</td><td class=\"n\">" << format_seconds(eval->wall_seconds)
         << "</td><td></td></tr>";
  }
  page << "</table>";
  if (!timings.found) {
    page << "<p class=\"note\">Stage times are recorded by <code>metareuse run</code> in " << escape(inputs.timings)
         << " (not found).</p>";
  }
}

void render_config(std::ostringstream& page, const std::string& path) {
  page << "<h2>Config</h2>";
  std::optional<json> config = read_json(path);
  if (!config || !config->is_object()) {
    page << missing("resolved config", path);
    return;
  }
  page << "<p class=\"note\">The resolved config of the run (" << escape(path) << "), by section.</p>"
       << "<div class=\"config\">";
  for (auto it = config->begin(); it != config->end(); ++it) {
    std::ostringstream rows;
    if (it->is_object()) {
      flatten_config(*it, it.key(), rows);
    } else {
      rows << "<tr><td>" << escape(it.key()) << "</td><td>" << escape(it->dump()) << "</td></tr>";
    }
    page << "<div><h3>" << escape(it.key()) << "</h3><table>" << rows.str() << "</table></div>";
  }
  page << "</div>";
}

}  // namespace

std::string render_report_html(const ReportInputs& inputs) {
  // Read first: the summary at the top needs the metrics and the eval.
  const MetricsFile metrics = read_metrics(inputs.metrics);
  const Curves curves = curves_of(metrics);
  const std::optional<EvalFile> eval = read_eval_file(inputs.eval);

  std::ostringstream page;
  page << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << escape(inputs.title)
       << "</title><style>"
          "body{font-family:sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222}"
          "h1{font-size:22px;margin-bottom:4px}"
          "h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}"
          "h3{font-size:14px;margin:0 0 4px}"
          "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
          "th{background:#f3f3f3}td.n{text-align:right}.charts{display:flex;flex-wrap:wrap;gap:12px}"
          ".missing{color:#a33}.note{color:#555;font-size:13px}"
          ".summary{background:#f6f8fa;border:1px solid #d8dee4;padding:8px 14px;font-size:14px}"
          ".summary li{margin:2px 0}dl{font-size:13px;color:#444}dt{font-weight:bold;float:left;clear:left;"
          "width:110px}dd{margin:0 0 3px 120px}.config{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}"
          "</style></head><body>";
  page << "<h1>" << escape(inputs.title) << "</h1>";
  page << "<p class=\"note\">";
  if (!inputs.folder.empty()) page << "Run folder " << escape(inputs.folder) << " &middot; ";
  page << "written " << utc_now("%Y-%m-%d %H:%M UTC") << "</p>";

  render_summary(page, curves, eval);  // what a reader looks for first
  render_training(page, curves, metrics, inputs.metrics);
  render_patterns(page, inputs.handbook);
  render_eval(page, eval, inputs.eval);
  render_answers(page, inputs.answers);
  render_timings(page, inputs, curves.train_seconds, eval);
  render_config(page, inputs.config);
  page << "</body></html>\n";
  return page.str();
}

void write_report(const ReportInputs& inputs, const std::string& path) {
  const std::string html = render_report_html(inputs);
  write_file_atomic(path, html);
}

}  // namespace metareuse
