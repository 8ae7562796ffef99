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

namespace metareuse::eval {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

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
  const double plot_width = kWidth - kLeft - kRight, plot_height = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x_min) / (x_max - x_min) * plot_width; };
  auto py = [&](double y) { return kTop + (1 - (y - y_min) / (y_max - y_min)) * plot_height; };
  // Axes, with 5 ticks on each.
  svg << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>)", kLeft, kTop,
                     plot_width, plot_height);
  for (int t = 0; t <= 4; ++t) {
    double y = y_min + (y_max - y_min) * t / 4.0, x = x_min + (x_max - x_min) * t / 4.0;
    double shown = log_y ? std::pow(10.0, y) : y;
    svg << fmt::format(R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#eee"/>)", kLeft,
                       kLeft + plot_width, py(y));
    svg << fmt::format(R"(<text x="{}" y="{:.1f}" font-size="11" text-anchor="end">{}</text>)", kLeft - 4,
                       py(y) + 4, format_number(shown));
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
  const double plot_width = kWidth - kLeft - kRight, plot_height = kHeight - kTop - kBottom;
  const double group = plot_width / bins, bar = group * 0.8 / static_cast<double>(series.size());
  svg << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>)", kLeft, kTop,
                     plot_width, plot_height);
  for (int t = 0; t <= 4; ++t) {
    double value = top * t / 4.0, y = kTop + plot_height * (1 - t / 4.0);
    svg << fmt::format(R"(<text x="{}" y="{:.1f}" font-size="11" text-anchor="end">{}</text>)", kLeft - 4, y + 4,
                       format_number(value));
  }
  for (int b = 0; b < bins; ++b) {
    for (std::size_t s = 0; s < series.size(); ++s) {
      double height = plot_height * counts[s][b] / top;
      svg << fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" opacity="0.85">)"
                         R"(<title>{}: {} in [{}, {})</title></rect>)",
                         kLeft + b * group + group * 0.1 + s * bar, kTop + plot_height - height, bar, height,
                         kColors[s % 4], escape(series[s].first), counts[s][b], format_number(low + b * bin_width),
                         format_number(low + (b + 1) * bin_width));
    }
    if (bins <= 10 || b % 2 == 0) {
      svg << fmt::format(R"(<text x="{:.1f}" y="{}" font-size="11" text-anchor="middle">{}</text>)",
                         kLeft + b * group + group / 2, kTop + plot_height + 14, format_number(low + b * bin_width));
    }
  }
  for (std::size_t s = 0; s < series.size(); ++s) {
    double x = kLeft + plot_width - 150, y = kTop + 8 + 16 * static_cast<double>(s);
    svg << fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="10" height="10" fill="{}"/>)", x, y, kColors[s % 4]);
    svg << fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="12">{} (n={})</text>)", x + 14, y + 9,
                       escape(series[s].first), series[s].second.size());
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

std::string flatten_config(const json& node, const std::string& prefix, std::ostringstream& rows) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object() && !it->empty()) {
      flatten_config(*it, key, rows);
    } else {
      rows << "<tr><td>" << escape(key) << "</td><td>" << escape(it->dump()) << "</td></tr>";
    }
  }
  return rows.str();
}

}  // namespace

ReportInputs report_inputs_for_run(const std::string& run_folder) {
  fs::path run(run_folder);
  ReportInputs inputs;
  inputs.metrics = (run / "metrics.jsonl").string();
  inputs.handbook = (run / "handbook.json").string();
  inputs.eval = (run / "eval" / "eval.json").string();
  inputs.answers = (run / "eval" / "answers.jsonl").string();
  inputs.config = (run / "config.resolved.json").string();
  inputs.title = "metareuse run " + run.filename().string();
  return inputs;
}

std::string render_report_html(const ReportInputs& inputs) {
  std::ostringstream page;
  page << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << escape(inputs.title)
       << "</title><style>"
          "body{font-family:sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222}"
          "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}"
          "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
          "th{background:#f3f3f3}td.n{text-align:right}.charts{display:flex;flex-wrap:wrap;gap:12px}"
          ".missing{color:#a33}.note{color:#555;font-size:13px}"
          "</style></head><body>";
  page << "<h1>" << escape(inputs.title) << "</h1>";

  // Training curves.
  page << "<h2>Training</h2>";
  JsonLines metrics = read_json_lines(inputs.metrics);
  double train_seconds = 0;
  if (!metrics.found) {
    page << missing("training metrics", inputs.metrics);
  } else {
    std::vector<double> steps, losses, scales;
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
    page << "<div class=\"charts\">" << line_chart("Loss", steps, losses, "optimizer step", false)
         << line_chart("Loss scale (log scale)", steps, scales, "optimizer step", true) << "</div>";
    page << fmt::format("<p class=\"note\">{} steps from {}{}.</p>", steps.size(), escape(inputs.metrics),
                        metrics.bad > 0 ? fmt::format(" ({} unreadable lines skipped)", metrics.bad) : "");
  }

  // Patterns.
  page << "<h2>Top patterns</h2>";
  if (auto handbook = read_json(inputs.handbook); handbook && handbook->contains("patterns")) {
    const json& patterns = (*handbook)["patterns"];
    page << fmt::format("<p class=\"note\">{} patterns mined from {} records (mode {}).</p>", patterns.size(),
                        handbook->value("records", 0), escape(handbook->value("mode", std::string("?"))));
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
  std::optional<json> eval = read_json(inputs.eval);
  double eval_seconds = 0;
  if (eval && eval->contains("models")) {
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
      page << "<tr><td>" << escape(it.key()) << "</td><td>" << escape(it->value("path", std::string())) << "</td>";
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
  } else {
    page << missing("evaluation", inputs.eval);
  }
  JsonLines answers = read_json_lines(inputs.answers);
  if (answers.found) {
    std::map<std::string, std::vector<double>> steps, tokens;
    for (const json& record : answers.records) {
      if (!record.is_object()) continue;
      std::string role = record.value("model", std::string("model"));
      steps[role].push_back(record.value("reasoning_steps", 0.0));
      tokens[role].push_back(record.value("generated_tokens", 0.0));
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
         << histogram("Reasoning steps per answer", ordered(steps), "reasoning steps (sentences before ####)")
         << histogram("Generated tokens per answer", ordered(tokens), "generated tokens") << "</div>";
  } else {
    page << missing("per-question answers", inputs.answers);
  }

  // Timings and config.
  page << "<h2>Timings</h2><table>";
  page << "<tr><td>training (sum of step times)</td><td class=\"n\">" << fmt::format("{:.1f} s", train_seconds)
       << "</td></tr>";
  page << "<tr><td>evaluation (sum of answer times, all models)</td><td class=\"n\">"
       << fmt::format("{:.1f} s", eval_seconds) << "</td></tr>";
  if (eval && eval->contains("wall_seconds")) {
    page << "<tr><td>evaluation wall clock</td><td class=\"n\">"
         << fmt::format("{:.1f} s", (*eval)["wall_seconds"].get<double>()) << "</td></tr>";
  }
  page << "</table>";
  page << "<h2>Config</h2>";
  if (auto config = read_json(inputs.config)) {
    std::ostringstream rows;
    page << "<table><tr><th>key</th><th>value</th></tr>" << flatten_config(*config, "", rows) << "</table>";
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
