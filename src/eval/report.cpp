// report.html: inline SVG charts and tables, hand-written because Debian has
// no C++ charting library that emits standalone SVG; the page is small (a few
// polylines and rectangles) and must work without network or script.
#include "metareuse/eval/report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"

namespace metareuse::eval {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// How an eval.json entry is named in the summary: "model" and "baseline" from `metareuse eval`, any other role
// (the experiment's "reuse" and "control") by its own name.
std::string role_label(const std::string& role) {
  if (role == "model") return "Tuned model";
  if (role == "baseline") return "Baseline";
  return role;
}

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

struct JsonLines {
  std::vector<json> records;
  std::int64_t bad = 0;
  bool found = false;
};

JsonLines read_json_lines(const std::string& path) {
  JsonLines lines;
  std::ifstream in(path);
  if (path.empty() || !in) return lines;
  lines.found = true;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      lines.records.push_back(json::parse(line));
    } catch (const std::exception&) {
      ++lines.bad;
    }
  }
  return lines;
}

std::optional<json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (path.empty() || !in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string format_number(double value) {
  if (value == 0) return "0";
  double magnitude = std::abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return fmt::format("{:.2e}", value);
  if (magnitude >= 100) return fmt::format("{:.0f}", value);
  return fmt::format("{:.3g}", value);
}

// Axis ticks at round values: steps of 1, 2 or 5 times a power of ten, at most
// about max_ticks of them between low and high.
double tick_step(double low, double high, int max_ticks) {
  const double raw = (high - low) / std::max(1, max_ticks);
  if (!(raw > 0)) return 1;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    if (factor * power >= raw) return factor * power;
  }
  return 10 * power;
}

std::vector<double> ticks_between(double low, double high, double step) {
  std::vector<double> ticks;
  for (double t = std::ceil(low / step - 1e-9) * step; t <= high + step * 1e-9; t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

constexpr double kWidth = 560, kHeight = 260, kLeft = 64, kRight = 16, kTop = 28, kBottom = 40;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};

// A line chart of (x, y) points; log_y plots log10(y) (for the loss scale).
std::string line_chart(const std::string& title, const std::vector<double>& xs, const std::vector<double>& ys,
                       const std::string& x_label, bool log_y) {
  std::ostringstream svg;
  svg << fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" )"
                     R"(role="img" aria-label="{2}">)",
                     kWidth, kHeight, escape(title));
  svg << fmt::format(R"(<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>)", kLeft, escape(title));
  std::vector<double> plotted;
  std::vector<double> plotted_x;
  for (std::size_t i = 0; i < ys.size(); ++i) {
    if (!std::isfinite(ys[i]) || (log_y && ys[i] <= 0)) continue;
    plotted.push_back(log_y ? std::log10(ys[i]) : ys[i]);
    plotted_x.push_back(xs[i]);
  }
  if (plotted.empty()) {
    svg << fmt::format(R"(<text x="{}" y="{}" font-size="13">no data</text></svg>)", kLeft, kHeight / 2);
    return svg.str();
  }
  double x_min = *std::min_element(plotted_x.begin(), plotted_x.end());
  double x_max = *std::max_element(plotted_x.begin(), plotted_x.end());
  double y_min = *std::min_element(plotted.begin(), plotted.end());
  double y_max = *std::max_element(plotted.begin(), plotted.end());
  if (x_max == x_min) x_max = x_min + 1;
  if (y_max == y_min) {
    y_max += 0.5;
    y_min -= 0.5;
  }
  // y ticks: round values (the axis is widened to the next ones); on a log
  // axis, powers of two (loss scales are powers of two).
  std::vector<double> y_ticks;  // in plotted units
  if (log_y) {
    const double per_tick = std::max(1.0, std::ceil((y_max - y_min) / std::log10(2.0) / 5));
    for (double e = std::floor(y_min / std::log10(2.0)); e <= std::ceil(y_max / std::log10(2.0)); e += per_tick) {
      y_ticks.push_back(e * std::log10(2.0));
    }
    y_min = std::min(y_min, y_ticks.front());
    y_max = std::max(y_max, y_ticks.back());
  } else {
    const double step = tick_step(y_min, y_max, 5);
    y_min = std::floor(y_min / step) * step;
    y_max = std::ceil(y_max / step) * step;
    y_ticks = ticks_between(y_min, y_max, step);
  }
  const double plot_width = kWidth - kLeft - kRight, plot_height = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x_min) / (x_max - x_min) * plot_width; };
  auto py = [&](double y) { return kTop + (1 - (y - y_min) / (y_max - y_min)) * plot_height; };
  svg << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>)", kLeft, kTop,
                     plot_width, plot_height);
  for (double y : y_ticks) {
    svg << fmt::format(R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#eee"/>)", kLeft,
                       kLeft + plot_width, py(y));
    svg << fmt::format(R"(<text x="{}" y="{:.1f}" font-size="11" text-anchor="end">{}</text>)", kLeft - 4,
                       py(y) + 4, format_number(log_y ? std::pow(10.0, y) : y));
  }
  // x ticks: round values inside the data's range (steps are whole numbers).
  for (double x : ticks_between(x_min, x_max, std::max(1.0, tick_step(x_min, x_max, 5)))) {
    svg << fmt::format(R"(<text x="{:.1f}" y="{}" font-size="11" text-anchor="middle">{}</text>)", px(x),
                       kTop + plot_height + 14, format_number(x));
  }
  svg << fmt::format(R"(<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>)", kLeft + plot_width / 2,
                     kHeight - 6, escape(x_label));
  svg << R"(<polyline fill="none" stroke=")" << kColors[0] << R"(" stroke-width="1.5" points=")";
  for (std::size_t i = 0; i < plotted.size(); ++i) {
    svg << fmt::format("{:.1f},{:.1f} ", px(plotted_x[i]), py(plotted[i]));
  }
  svg << R"("/>)";
  if (plotted.size() == 1) {
    svg << fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", px(plotted_x[0]), py(plotted[0]),
                       kColors[0]);
  }
  svg << "</svg>";
  return svg.str();
}

// Side-by-side bars of several series over shared integer-width bins.
std::string histogram(const std::string& title, const std::vector<std::pair<std::string, std::vector<double>>>& series,
                      const std::string& x_label) {
  std::ostringstream svg;
  svg << fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" )"
                     R"(role="img" aria-label="{2}">)",
                     kWidth, kHeight, escape(title));
  svg << fmt::format(R"(<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>)", kLeft, escape(title));
  double low = INFINITY, high = -INFINITY;
  for (const auto& [name, values] : series) {
    for (double v : values) {
      low = std::min(low, v);
      high = std::max(high, v);
    }
  }
  if (!std::isfinite(low)) {
    svg << fmt::format(R"(<text x="{}" y="{}" font-size="13">no data</text></svg>)", kLeft, kHeight / 2);
    return svg.str();
  }
  // At most 20 bins, each a whole number of units wide.
  const double span = high - low + 1;
  const double bin_width = std::max(1.0, std::ceil(span / 20.0));
  const int bins = static_cast<int>(std::ceil(span / bin_width));
  std::vector<std::vector<int>> counts(series.size(), std::vector<int>(bins, 0));
  int top = 1;
  for (std::size_t s = 0; s < series.size(); ++s) {
    for (double v : series[s].second) {
      int bin = std::min(bins - 1, static_cast<int>((v - low) / bin_width));
      top = std::max(top, ++counts[s][bin]);
    }
  }
  // The legend has its own row between the title and the plot, so it never
  // covers a bar.
  const double legend_row = 22, plot_top = kTop + legend_row;
  double legend_x = kLeft;
  for (std::size_t s = 0; s < series.size(); ++s) {
    const std::string label = fmt::format("{} (n={})", series[s].first, series[s].second.size());
    svg << fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="10" height="10" fill="{}"/>)", legend_x, kTop + 2,
                       kColors[s % 4]);
    svg << fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="12">{}</text>)", legend_x + 14, kTop + 11,
                       escape(label));
    legend_x += 14 + 7.0 * static_cast<double>(label.size()) + 18;
  }
  // Counts are whole numbers: whole-number ticks, the axis up to the last one.
  const double count_step = std::max(1.0, tick_step(0, top, 4));
  const double count_top = std::ceil(top / count_step) * count_step;
  const double plot_width = kWidth - kLeft - kRight, plot_height = kHeight - plot_top - kBottom;
  const double group = plot_width / bins, bar = group * 0.8 / static_cast<double>(series.size());
  svg << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>)", kLeft, plot_top,
                     plot_width, plot_height);
  for (double value : ticks_between(0, count_top, count_step)) {
    double y = plot_top + plot_height * (1 - value / count_top);
    svg << fmt::format(R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#eee"/>)", kLeft,
                       kLeft + plot_width, y);
    svg << fmt::format(R"(<text x="{}" y="{:.1f}" font-size="11" text-anchor="end">{}</text>)", kLeft - 4, y + 4,
                       format_number(value));
  }
  svg << fmt::format(R"svg(<text x="14" y="{:.1f}" font-size="12" text-anchor="middle" )svg"
                     R"svg(transform="rotate(-90 14 {:.1f})">answers</text>)svg",
                     plot_top + plot_height / 2, plot_top + plot_height / 2);
  for (int b = 0; b < bins; ++b) {
    for (std::size_t s = 0; s < series.size(); ++s) {
      double height = plot_height * counts[s][b] / count_top;
      svg << fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" opacity="0.85">)"
                         R"(<title>{}: {} in [{}, {})</title></rect>)",
                         kLeft + b * group + group * 0.1 + s * bar, plot_top + plot_height - height, bar, height,
                         kColors[s % 4], escape(series[s].first), counts[s][b], format_number(low + b * bin_width),
                         format_number(low + (b + 1) * bin_width));
    }
    // Bins one unit wide are labelled with their value under the bar; wider
    // bins by their edges, so "[37, 40)" reads as the space between 37 and 40.
    if (bin_width == 1 && (bins <= 12 || b % 2 == 0)) {
      svg << fmt::format(R"(<text x="{:.1f}" y="{}" font-size="11" text-anchor="middle">{}</text>)",
                         kLeft + b * group + group / 2, plot_top + plot_height + 14, format_number(low + b));
    }
  }
  if (bin_width > 1) {
    for (int edge = 0; edge <= bins; edge += bins <= 12 ? 1 : 2) {
      const double x = kLeft + edge * group;
      svg << fmt::format(R"(<line x1="{0:.1f}" x2="{0:.1f}" y1="{1:.1f}" y2="{2:.1f}" stroke="#999"/>)", x,
                         plot_top + plot_height, plot_top + plot_height + 4);
      svg << fmt::format(R"(<text x="{:.1f}" y="{}" font-size="11" text-anchor="middle">{}</text>)", x,
                         plot_top + plot_height + 15, format_number(low + edge * bin_width));
    }
  }
  svg << fmt::format(R"(<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>)", kLeft + plot_width / 2,
                     kHeight - 6, escape(x_label));
  svg << "</svg>";
  return svg.str();
}

std::string missing(const std::string& what, const std::string& path) {
  return fmt::format("<p class=\"missing\">No {}: {} was not found.</p>", what,
                     path.empty() ? "no file given" : escape(path));
}

std::string cell(const json& value, bool percent = false) {
  if (value.is_null()) return "&ndash;";
  if (value.is_number()) {
    double v = value.get<double>();
    return percent ? fmt::format("{:.1f}%", 100.0 * v) : format_number(v);
  }
  return escape(value.is_string() ? value.get<std::string>() : value.dump());
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

}  // namespace

ReportInputs report_inputs_for_run(const std::string& run_folder) {
  fs::path run(run_folder);
  ReportInputs inputs;
  inputs.folder = run_folder;
  inputs.metrics = (run / "metrics.jsonl").string();
  inputs.handbook = (run / "handbook.json").string();
  inputs.eval = (run / "eval" / "eval.json").string();
  inputs.answers = (run / "eval" / "answers.jsonl").string();
  inputs.config = (run / "config.resolved.json").string();
  inputs.timings = (run / "timings.json").string();
  // The run's name from its config; the folder's name when there is none.
  std::string name;
  if (auto config = read_json(inputs.config); config && config->contains("run") && (*config)["run"].is_object()) {
    name = (*config)["run"].value("name", std::string());
  }
  if (name.empty()) name = fs::absolute(run).lexically_normal().filename().string();
  if (name.empty()) name = fs::absolute(run).lexically_normal().parent_path().filename().string();
  inputs.title = "metareuse report: " + name;
  return inputs;
}

std::string render_report_html(const ReportInputs& inputs) {
  // Read everything first: the summary at the top needs the metrics and the eval.
  JsonLines metrics = read_json_lines(inputs.metrics);
  std::vector<double> steps, losses, scales;
  double train_seconds = 0;
  for (const json& record : metrics.records) {
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number()) continue;
    steps.push_back(record["step"].get<double>());
    auto number = [&](const char* key) {
      return record.contains(key) && record[key].is_number() ? record[key].get<double>() : NAN;
    };
    losses.push_back(number("loss"));
    scales.push_back(number("loss_scale"));
    if (record.contains("seconds") && record["seconds"].is_number()) train_seconds += record["seconds"].get<double>();
  }
  std::optional<json> eval = read_json(inputs.eval);
  if (eval && !(eval->is_object() && eval->contains("models") && (*eval)["models"].is_object())) eval.reset();
  std::optional<json> timings = read_json(inputs.timings);
  if (timings && !(timings->is_object() && timings->contains("stages") && (*timings)["stages"].is_object())) {
    timings.reset();
  }

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

  // Summary: what a reader looks for first.
  page << "<ul class=\"summary\">";
  if (!steps.empty()) {
    page << fmt::format("<li>Training: {} optimizer steps, loss {} &rarr; {} ({} of step time).</li>", steps.size(),
                        format_number(losses.front()), format_number(losses.back()), format_seconds(train_seconds));
  } else {
    page << "<li>Training: no metrics.</li>";
  }
  if (eval) {
    for (auto it = (*eval)["models"].begin(); it != (*eval)["models"].end(); ++it) {
      const json summary = it->value("summary", json::object());
      page << fmt::format("<li>{}: accuracy {} ({} of {} questions), {} generated tokens and {} reasoning steps "
                          "per answer on average.</li>",
                          role_label(it.key()), cell(summary.value("accuracy", json()), true),
                          cell(summary.value("correct", json())), cell(summary.value("questions", json())),
                          cell(summary.value("mean_generated_tokens", json())),
                          cell(summary.value("mean_reasoning_steps", json())));
    }
    // The seed's claim in one line: fewer tokens and steps at the same accuracy.
    if (eval->contains("relative_change") && (*eval)["relative_change"].is_object()) {
      const json& change = (*eval)["relative_change"];
      auto percent = [&](const char* key) {
        if (!change.contains(key) || !change[key].is_number()) return std::string("&ndash;");
        return fmt::format("{:+.1f}%", 100.0 * change[key].get<double>());
      };
      std::string points = change.contains("accuracy_points") && change["accuracy_points"].is_number()
                               ? fmt::format("{:+.1f} points", change["accuracy_points"].get<double>())
                               : std::string("&ndash;");
      const std::string of = eval->value("relative_change_of", std::string("model"));
      page << fmt::format("<li>{} against baseline: accuracy {}, mean generated tokens {}, mean reasoning "
                          "steps {}, pattern use {}.</li>",
                          escape(of == "model" ? std::string("Tuned") : role_label(of)), points, percent("mean_generated_tokens"), percent("mean_reasoning_steps"),
                          percent("pattern_use_rate"));
    }
  } else {
    page << "<li>Evaluation: none (no eval.json).</li>";
  }
  page << "</ul>";

  // Training curves.
  page << "<h2>Training</h2>";
  if (!metrics.found) {
    page << missing("training metrics", inputs.metrics);
  } else {
    page << "<div class=\"charts\">" << line_chart("Loss", steps, losses, "optimizer step", false)
         << line_chart("Loss scale (log scale)", steps, scales, "optimizer step", true) << "</div>";
    page << fmt::format("<p class=\"note\">{} steps from {}{}.", steps.size(), escape(inputs.metrics),
                        metrics.bad > 0 ? fmt::format(" ({} unreadable lines skipped)", metrics.bad) : "");
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

  // Patterns.
  page << "<h2>Top patterns</h2>";
  if (auto handbook = read_json(inputs.handbook); handbook && handbook->contains("patterns")) {
    const json& patterns = (*handbook)["patterns"];
    // The handbook's order is the selection order, which is not support order
    // under coverage selection; say so, or the table looks unsorted.
    std::string selection;
    if (handbook->contains("config") && (*handbook)["config"].is_object()) {
      selection = (*handbook)["config"].value("selection", std::string());
    }
    page << fmt::format("<p class=\"note\">{} patterns mined from {} records (mode {}); support is the number of "
                        "records a pattern occurs in. {}</p>",
                        patterns.size(), handbook->value("records", 0),
                        escape(handbook->value("mode", std::string("?"))),
                        selection == "coverage"
                            ? "Listed in selection order: each pattern adds the most records not yet covered by the "
                              "ones above it (patterns.selection = coverage), so support is not sorted."
                            : "Listed in the handbook's order.");
    page << "<table><tr><th>#</th><th>pattern</th><th>support</th><th>kind</th></tr>";
    std::size_t shown = 0;
    for (const json& pattern : patterns) {
      if (++shown > 20) break;
      page << "<tr><td class=\"n\">" << shown << "</td><td>" << escape(pattern.value("text", std::string()))
           << "</td><td class=\"n\">" << pattern.value("support", 0) << "</td><td>"
           << escape(pattern.value("kind", std::string())) << "</td></tr>";
    }
    page << "</table>";
  } else {
    page << missing("handbook", inputs.handbook);
  }

  // Evaluation.
  page << "<h2>Evaluation</h2>";
  double eval_seconds = 0;
  if (eval) {
    const json& models = (*eval)["models"];
    page << fmt::format("<p class=\"note\">{} questions from {}; {} decoding, at most {} new tokens.</p>",
                        eval->value("questions", 0), escape(eval->value("questions_file", std::string())),
                        eval->contains("generation") && (*eval)["generation"].value("greedy", true) ? "greedy"
                                                                                                     : "sampled",
                        eval->contains("generation") ? (*eval)["generation"].value("max_new_tokens", 0) : 0);
    struct Column {
      const char* key;
      const char* header;
      bool percent;
    };
    const Column columns[] = {{"accuracy", "accuracy", true},
                              {"correct", "correct", false},
                              {"answered_rate", "answered", true},
                              {"mean_generated_tokens", "mean tokens", false},
                              {"median_generated_tokens", "median tokens", false},
                              {"mean_reasoning_tokens", "mean reasoning tokens", false},
                              {"mean_reasoning_steps", "mean steps", false},
                              {"pattern_use_rate", "pattern use", true},
                              {"stopped_rate", "stopped", true}};
    page << "<table><tr><th>model</th><th>path</th>";
    for (const Column& column : columns) page << "<th>" << column.header << "</th>";
    page << "</tr>";
    for (auto it = models.begin(); it != models.end(); ++it) {
      page << "<tr><td>" << escape(it.key() == "model" ? std::string("tuned") : it.key()) << "</td><td>"
           << escape(it->value("path", std::string())) << "</td>";
      for (const Column& column : columns) {
        page << "<td class=\"n\">" << cell(it->value("summary", json::object()).value(column.key, json()), column.percent)
             << "</td>";
      }
      page << "</tr>";
      eval_seconds += it->value("summary", json::object()).value("seconds", 0.0);
    }
    // One relative-change row per entry compared with the baseline (older files: the one relative_change).
    std::vector<std::pair<std::string, json>> changes;
    for (auto it = models.begin(); it != models.end(); ++it) {
      if (it->contains("change_vs_baseline")) changes.emplace_back(it.key(), (*it)["change_vs_baseline"]);
    }
    if (changes.empty() && eval->contains("relative_change")) changes.emplace_back("model", (*eval)["relative_change"]);
    for (const auto& [role, change] : changes) {
      page << "<tr><td>relative change</td><td>" << escape(role) << " vs baseline</td>";
      for (const Column& column : columns) {
        page << "<td class=\"n\">" << (change.contains(column.key) ? cell(change[column.key], true) : "&ndash;")
             << "</td>";
      }
      page << "</tr>";
    }
    page << "</table>";
    // What the columns mean (eval.json's own definitions, then the rest).
    const json definitions = eval->value("definitions", json::object());
    auto definition = [&](const char* key, const char* fallback) {
      return escape(definitions.contains(key) && definitions[key].is_string() ? definitions[key].get<std::string>()
                                                                              : std::string(fallback));
    };
    page << "<dl><dt>accuracy</dt><dd>" << definition("accuracy", "the final answer equals the reference")
         << "</dd><dt>answered</dt><dd>share of answers with a final answer to compare (a '####' or \\boxed{})</dd>"
         << "<dt>tokens</dt><dd>" << definition("generated_tokens", "tokens generated") << "</dd><dt>steps</dt><dd>"
         << definition("reasoning_steps", "sentences before the answer") << "</dd><dt>pattern use</dt><dd>"
         << definition("pattern_use_rate", "share of answers using a handbook pattern")
         << "</dd><dt>stopped</dt><dd>share of answers that ended with the stop token, not at the token budget"
         << "</dd></dl>";
    if (!models.contains("baseline")) {
      page << "<p class=\"note\">No baseline model (eval.baseline is empty): the table and the histograms show "
              "the tuned model only. Set eval.baseline to the model before fine-tuning to compare.</p>";
    }
  } else {
    page << missing("evaluation", inputs.eval);
  }
  JsonLines answers = read_json_lines(inputs.answers);
  if (answers.found) {
    std::map<std::string, std::vector<double>> answer_steps, answer_tokens;
    for (const json& record : answers.records) {
      if (!record.is_object()) continue;
      std::string role = record.value("model", std::string("model"));
      answer_steps[role].push_back(record.value("reasoning_steps", 0.0));
      answer_tokens[role].push_back(record.value("generated_tokens", 0.0));
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
  } else {
    page << missing("per-question answers", inputs.answers);
  }

  // Timings and config.
  page << "<h2>Timings</h2><table><tr><th>what</th><th>time</th><th>finished</th></tr>";
  if (timings) {
    // In the order the stages finished ("sequence" counts up across runs).
    std::vector<std::pair<std::string, json>> stages;
    for (auto it = (*timings)["stages"].begin(); it != (*timings)["stages"].end(); ++it) {
      if (it->is_object()) stages.emplace_back(it.key(), *it);
    }
    std::stable_sort(stages.begin(), stages.end(), [](const auto& a, const auto& b) {
      return a.second.value("sequence", 0) < b.second.value("sequence", 0);
    });
    for (const auto& [name, stage] : stages) {
      page << "<tr><td>stage " << escape(name) << "</td><td class=\"n\">" << format_seconds(stage.value("seconds", 0.0))
           << "</td><td>" << escape(stage.value("finished", std::string())) << "</td></tr>";
    }
  }
  page << "<tr><td>training (sum of step times)</td><td class=\"n\">" << format_seconds(train_seconds)
       << "</td><td></td></tr>";
  page << "<tr><td>evaluation (answer times summed over ranks and models)</td><td class=\"n\">"
       << format_seconds(eval_seconds)
       << "</td><td></td></tr>";
  if (eval && eval->contains("wall_seconds") && (*eval)["wall_seconds"].is_number()) {
    page << "<tr><td>evaluation wall clock</td><td class=\"n\">"
         << format_seconds((*eval)["wall_seconds"].get<double>()) << "</td><td></td></tr>";
  }
  page << "</table>";
  if (!timings) {
    page << "<p class=\"note\">Stage times are recorded by <code>metareuse run</code> in " << escape(inputs.timings)
         << " (not found).</p>";
  }
  page << "<h2>Config</h2>";
  if (auto config = read_json(inputs.config); config && config->is_object()) {
    page << "<p class=\"note\">The resolved config of the run (" << escape(inputs.config)
         << "), by section.</p><div class=\"config\">";
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
  } else {
    page << missing("resolved config", inputs.config);
  }
  page << "</body></html>\n";
  return page.str();
}

void write_report(const ReportInputs& inputs, const std::string& path) {
  const std::string html = render_report_html(inputs);
  fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("{}: cannot write the report", temporary));
    out << html;
    if (!out.flush()) throw Error(fmt::format("{}: failed writing the report", temporary));
  }
  fs::rename(temporary, path);
}

}  // namespace metareuse::eval
