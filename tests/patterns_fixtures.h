// Shared by the corpus, patterns and augment tests: a synthetic corpus with
// tricky white space and Unicode, a temp folder every rank agrees on, and the
// Python reference (../shared/reference/seed_patterns.py) run from rank 0.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "metareuse/distributed/communicator.h"
#include "test_support.h"

namespace metareuse::test {

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Reasoning texts built to catch every difference from the reference's rule:
// sentences of exactly 15 and 16 code points in multi-byte UTF-8, runs of
// \t \f \v \r, CRLF inside the text, non-ASCII white space (which Python's
// strip(" \t\n\r\f\v") keeps), '!'/'?' cuts, repeats within one record.
inline std::vector<std::string> tricky_reasonings() {
  return {
      "Fifteen chars!!\nSixteen chars!!!\n\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\n"
      "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
      "Multiply the two numbers first.\t\tThen add the remainder here!\f\fIs it bigger than ten?\vYes it is much bigger.",
      "  Multiply the two numbers first.   Then add the remainder here!\r\nIs it bigger than ten?  \r\n",
      "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9 \u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
      "\u00a0Non-breaking space stays put.\u00a0\u00a0Next one keeps it.\u3000Ideographic space here too.\u3000",
      "\u00a0Non-breaking space stays put.\u00a0\u00a0Next one keeps it.\u3000Ideographic space here too.\u3000",
      "Mr. Smith buys 3.50 worth of apples. Mr. Smith buys 3.50 worth of apples. \u4e2d\u6587\u53e5\u5b50\u4e5f\u8981\u7b97\u4e00\u7b97\u957f\u5ea6\u5bf9\u4e0d\u5bf9\u5462\u5440\u3002",
      "Mr. Smith buys 3.50 worth of apples.\u4e2d\u6587\u53e5\u5b50\u4e5f\u8981\u7b97\u4e00\u7b97\u957f\u5ea6\u5bf9\u4e0d\u5bf9\u5462\u5440\u3002",
      "Emoji count as one code point: \U0001F600\U0001F600.\nWait... really?! Yes.\n\nMultiply the two numbers first.",
      "Fifteen chars!!\nSixteen chars!!!\nWait... really?! Yes.",
      "Then add the remainder here!\nThen add the remainder here!\n\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
      "",
      "No split.here because no space follows the dot.So this is one long sentence.",
      "No split.here because no space follows the dot.So this is one long sentence.",
  };
}

// The tricky corpus as JSON Lines: seed records, GSM8K records (reasoning
// before "####"), CRLF line ends on some lines, blank lines, no final newline.
inline std::string tricky_corpus() {
  std::string out;
  auto reasonings = tricky_reasonings();
  for (std::size_t i = 0; i < reasonings.size(); ++i) {
    nlohmann::json record;
    record["question"] = "Question " + std::to_string(i) + "?";
    if (i % 3 == 2) {
      record["answer"] = reasonings[i] + "\n#### " + std::to_string(i);
    } else {
      record["reasoning"] = reasonings[i];
      record["solution"] = std::to_string(i);
    }
    out += record.dump(-1, ' ', /*ensure_ascii=*/i % 2 == 0);
    out += (i % 4 == 1) ? "\r\n" : "\n";
    if (i == 5) out += "   \n\n";
  }
  out.pop_back();  // the last line has no newline
  return out;
}

// The reference's output on `corpus`, or an empty object when python3 or
// ../shared is missing. Run it on rank 0 only and broadcast.
inline nlohmann::json run_reference(const std::string& corpus, int min_support, int top_k) {
  std::string shared = shared_dir();
  if (shared.empty() || run_shell(std::string("command -v '") + METAREUSE_PYTHON + "' >/dev/null").status != 0) return nlohmann::json::object();
  CommandResult result = run_shell(std::string("'") + METAREUSE_PYTHON + "' '" + shared + "/reference/seed_patterns.py' '" + corpus +
                                   "' --min-support " + std::to_string(min_support) + " --top-k " +
                                   std::to_string(top_k) + " 2>/dev/null");
  if (result.status != 0) return nlohmann::json{{"error", result.output}};
  return nlohmann::json::parse(result.output);
}

}  // namespace metareuse::test
