#include "metareuse/tokenizer/tokenize_file.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // ordered_json keeps each record's key order

#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
namespace {
constexpr int kMaxReportedBadRecords = 10;
}  // namespace

TokenizeFileStats tokenize_json_lines(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                                      bool special) {
  std::ifstream in(input, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open input", input));
  if (auto parent = std::filesystem::path(output).parent_path(); !parent.empty()) {
    std::filesystem::create_directories(parent);
  }
  std::ofstream out(output, std::ios::binary);
  if (!out) throw InputError(fmt::format("{}: cannot open output", output));
  Stopwatch watch;
  TokenizeFileStats stats;
  std::string line;
  std::int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      auto record = nlohmann::ordered_json::parse(line);
      if (!record.is_object()) throw InputError("the line is not a JSON object");
      auto text = record.find("text");
      if (text == record.end() || !text->is_string()) throw InputError("no string field \"text\"");
      const std::string& content = text->get_ref<const std::string&>();
      auto ids = special ? tokenizer.encode_with_special(content) : tokenizer.encode(content);
      stats.tokens += static_cast<std::int64_t>(ids.size());
      stats.bytes += static_cast<std::int64_t>(content.size());
      record["ids"] = std::move(ids);
      out << record.dump() << '\n';
      ++stats.records;
    } catch (const std::exception& e) {
      // Bad records are reported and skipped; the good ones are still written.
      if (++stats.bad <= kMaxReportedBadRecords) log::warn("{}:{}: skipped: {}", input, line_number, e.what());
    }
  }
  out.close();
  if (!out) throw Error(fmt::format("{}: write failed", output));
  double seconds = watch.seconds();
  log::info("tokenized {} record(s) ({} bytes, {} tokens) in {:.2f} s ({:.1f} MB/s) into {}; {} bad record(s)",
            stats.records, stats.bytes, stats.tokens, seconds, seconds > 0 ? stats.bytes / seconds / 1e6 : 0.0, output,
            stats.bad);
  return stats;
}

}  // namespace metareuse
