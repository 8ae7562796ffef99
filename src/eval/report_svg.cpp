// The report's inline SVG charts, hand-written because Debian has no C++
// charting library that emits standalone SVG; the page is small (a few
// polylines and rectangles) and must work without network or script.
#include "report_svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>  // std::size
#include <sstream>

namespace metareuse::eval_detail {

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

std::string format_number(double value) {
  if (value == 0) return "0";
  double magnitude = std::abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return fmt::format("{:.2e}", value);
  if (magnitude >= 100) return fmt::format("{:.0f}", value);
  return fmt::format("{:.3g}", value);
}

namespace {

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

}  // namespace

std::string line_chart(const std::string& title, const std::vector<double>& xs, const std::vector<double>& ys,
                       const std::string& x_label, bool log_y) {
  return line_chart(title, std::vector<ChartSeries>{{"", xs, ys}}, x_label, log_y);
}

std::string line_chart(const std::string& title, const std::vector<ChartSeries>& series, const std::string& x_label,
                       bool log_y) {
  std::ostringstream svg;
  svg << fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" )"
                     R"(role="img" aria-label="{2}">)",
                     kWidth, kHeight, escape(title));
  svg << fmt::format(R"(<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>)", kLeft, escape(title));
  // Each series' plotted points (y in plotted units), and all of them for the axes.
  std::vector<std::vector<double>> plotted(series.size()), plotted_x(series.size());
  std::vector<double> all_x, all_y;
  for (std::size_t s = 0; s < series.size(); ++s) {
    const ChartSeries& line = series[s];
    for (std::size_t i = 0; i < line.ys.size() && i < line.xs.size(); ++i) {
      if (!std::isfinite(line.ys[i]) || (log_y && line.ys[i] <= 0)) continue;
      plotted[s].push_back(log_y ? std::log10(line.ys[i]) : line.ys[i]);
      plotted_x[s].push_back(line.xs[i]);
    }
    all_x.insert(all_x.end(), plotted_x[s].begin(), plotted_x[s].end());
    all_y.insert(all_y.end(), plotted[s].begin(), plotted[s].end());
  }
  if (all_y.empty()) {
    svg << fmt::format(R"(<text x="{}" y="{}" font-size="13">no data</text></svg>)", kLeft, kHeight / 2);
    return svg.str();
  }
  double x_min = *std::min_element(all_x.begin(), all_x.end());
  double x_max = *std::max_element(all_x.begin(), all_x.end());
  double y_min = *std::min_element(all_y.begin(), all_y.end());
  double y_max = *std::max_element(all_y.begin(), all_y.end());
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
  const std::size_t colors = std::size(kColors);
  for (std::size_t s = 0; s < series.size(); ++s) {
    if (plotted[s].empty()) continue;
    const char* color = kColors[s % colors];
    svg << R"(<polyline fill="none" stroke=")" << color << R"(" stroke-width="1.5" points=")";
    for (std::size_t i = 0; i < plotted[s].size(); ++i) {
      svg << fmt::format("{:.1f},{:.1f} ", px(plotted_x[s][i]), py(plotted[s][i]));
    }
    svg << R"("/>)";
    if (plotted[s].size() == 1) {
      svg << fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", px(plotted_x[s][0]),
                         py(plotted[s][0]), color);
    }
  }
  // The legend, top right inside the plot, when there are lines to tell apart.
  if (series.size() > 1) {
    double y = kTop + 14;
    for (std::size_t s = 0; s < series.size(); ++s) {
      const char* color = kColors[s % colors];
      svg << fmt::format(R"(<line x1="{0:.1f}" x2="{1:.1f}" y1="{2:.1f}" y2="{2:.1f}" stroke="{3}" stroke-width="2"/>)",
                         kLeft + plot_width - 130, kLeft + plot_width - 112, y - 4, color);
      svg << fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="11">{}</text>)", kLeft + plot_width - 108, y,
                         escape(series[s].name));
      y += 14;
    }
  }
  svg << "</svg>";
  return svg.str();
}

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


}  // namespace metareuse::eval_detail
