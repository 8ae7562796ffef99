#include "metareuse/tokenizer/tokenize_file.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // ordered_json keeps each record's key order

#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/timing.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
namespace {
constexpr int kMaxReportedBadRecords = 10;
}  // namespace

TokenizeFileStats tokenize_json_lines(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                                      bool special) {
  std::ifstream in(input, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open input: {}", input, why_unreadable(input)));
  AtomicFile out(output);  // every write checked; nothing replaces the output unless complete
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
      out.write(record.dump() + '\n');
      ++stats.records;
    } catch (const std::exception& e) {
      // Bad records are reported and skipped; the good ones are still written.
      if (++stats.bad <= kMaxReportedBadRecords) log_warn("{}:{}: skipped: {}", input, line_number, e.what());
    }
  }
  if (stats.records == 0) {
    // An empty result is an error: nothing is written and the reason is given.
    throw InputError(fmt::format("{}: no record to tokenize: {} line(s) read, {} bad (each record needs a string "
                                 "field \"text\"; the first bad lines are listed above)",
                                 input, line_number, stats.bad));
  }
  out.commit();
  double seconds = watch.seconds();
  log_info("tokenized {} record(s) ({} bytes, {} tokens) in {:.2f} s ({:.1f} MB/s) into {}; {} bad record(s)",
            stats.records, stats.bytes, stats.tokens, seconds, seconds > 0 ? stats.bytes / seconds / 1e6 : 0.0, output,
            stats.bad);
  return stats;
}

}  // namespace metareuse
