// Building blocks of report.html (report.cpp): HTML escaping, numbers as the
// page prints them, and the two inline SVG charts. Private to the eval stage.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace metareuse::eval_detail {

// &, <, > and " as entities.
std::string escape(const std::string& text);

// 3 significant digits; scientific notation outside [1e-3, 1e5).
std::string format_number(double value);

// A line chart of (x, y) points; log_y plots log10(y) (for the loss scale).
// Points whose y is not finite (or not positive on a log axis) are left out.
std::string line_chart(const std::string& title, const std::vector<double>& xs, const std::vector<double>& ys,
                       const std::string& x_label, bool log_y);

// One named line of a chart with several.
struct ChartSeries {
  std::string name;
  std::vector<double> xs, ys;
};

// Several lines on shared axes, each in its own colour, with a legend naming
// them when there is more than one (the training and the validation loss).
std::string line_chart(const std::string& title, const std::vector<ChartSeries>& series, const std::string& x_label,
                       bool log_y);

// Side-by-side bars of several (name, values) series over shared integer-width bins.
std::string histogram(const std::string& title, const std::vector<std::pair<std::string, std::vector<double>>>& series,
                      const std::string& x_label);

}  // namespace metareuse::eval_detail
