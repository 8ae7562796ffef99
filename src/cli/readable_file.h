// The check of every flag that names an input file (--config, tokenize's
// --input and --train): the file must exist and be readable. Instead of
// CLI11's ExistingFile ("File does not exist: x"), the message says why not
// and where the file was looked for (core/looked_for.h).
#pragma once

#include <CLI/CLI.hpp>  // CLI::Validator

#include <filesystem>
#include <string>

#include "metareuse/core/looked_for.h"

namespace metareuse::cli_detail {

inline CLI::Validator readable_file() {
  return CLI::Validator(
      [](std::string& path) {
        std::error_code error;
        return std::filesystem::is_regular_file(path, error) ? std::string() : path + ": " + why_unreadable(path);
      },
      "FILE", "readable file");
}

}  // namespace metareuse::cli_detail
