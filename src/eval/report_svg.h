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

// Side-by-side bars of several (name, values) series over shared integer-width bins.
std::string histogram(const std::string& title, const std::vector<std::pair<std::string, std::vector<double>>>& series,
                      const std::string& x_label);

}  // namespace metareuse::eval_detail
