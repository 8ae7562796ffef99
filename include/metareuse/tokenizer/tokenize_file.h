// `metareuse tokenize --input`: JSON Lines records with a "text" field, each
// written back with its token ids added as "ids" (the record's other keys in
// their order). Runs on one rank; `prepare` is the stage that tokenizes in parallel.
#pragma once

#include <cstdint>
#include <string>

namespace metareuse {

class Tokenizer;

struct TokenizeFileStats {
  std::int64_t records = 0;  // written
  std::int64_t bad = 0;      // skipped, the first few warned about with file:line
  std::int64_t tokens = 0;
  std::int64_t bytes = 0;    // of the texts
};

// `special`: special-token text (<|eot_id|>) becomes special ids; otherwise it is ordinary text.
TokenizeFileStats tokenize_json_lines(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                                      bool special);

}  // namespace metareuse
