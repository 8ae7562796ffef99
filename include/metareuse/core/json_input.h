// JSON that comes with a model folder (config.json, safetensors headers and
// index, tokenizer.json, tokenizer_config.json) is parsed with a bound on its
// nesting. nlohmann parses and frees deep input without recursion, but copies
// and prints it recursively: 100,000 '[' would overflow the stack later, far
// from the file, instead of failing here with its name.
#pragma once

#include <fmt/format.h>       // the message
#include <nlohmann/json.hpp>  // the parser

#include <string>
#include <utility>

#include "metareuse/core/error.h"  // InputError

namespace metareuse {

// Real files nest a few levels (tokenizer.json: 6).
constexpr int kMaxJsonInputDepth = 64;

// nlohmann::json::parse(input...) that throws InputError naming `where` when
// the input nests deeper than kMaxJsonInputDepth; syntax errors stay
// nlohmann::json::parse_error, for the caller's message.
template <typename... Input>
nlohmann::json parse_json_input(const std::string& where, Input&&... input) {
  const nlohmann::json::parser_callback_t bounded = [&where](int depth, nlohmann::json::parse_event_t,
                                                             nlohmann::json&) {
    if (depth > kMaxJsonInputDepth) {
      throw InputError(fmt::format("{}: JSON nested deeper than {} levels; not a file a model folder holds", where,
                                   kMaxJsonInputDepth));
    }
    return true;
  };
  return nlohmann::json::parse(std::forward<Input>(input)..., bounded);
}

}  // namespace metareuse
