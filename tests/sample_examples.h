// Augmented examples made from datasets/sample_reasoning.jsonl, for the
// end-to-end tests that prepare and train on them (test_train_cli,
// test_eval_cli, test_failures_cli).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "test_paths.h"  // METAREUSE_SOURCE_DIR

namespace metareuse::test {

// One {"prompt": question + prompt_suffix, "target": reasoning "\n#### " solution}
// line per sample record, written to `path`.
inline void write_sample_augmented(const std::filesystem::path& path, const std::string& prompt_suffix = "") {
  std::ofstream augmented(path);
  std::ifstream corpus(std::string(METAREUSE_SOURCE_DIR) + "/datasets/sample_reasoning.jsonl");
  std::string line;
  while (std::getline(corpus, line)) {
    auto record = nlohmann::json::parse(line);
    augmented << nlohmann::json{{"prompt", record["question"].get<std::string>() + prompt_suffix},
                                {"target", record["reasoning"].get<std::string>() + "\n#### " +
                                               record["solution"].get<std::string>()}}
                     .dump()
              << "\n";
  }
}

}  // namespace metareuse::test
