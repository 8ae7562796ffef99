#include "metareuse/run/layout.h"

#include <filesystem>

#include "metareuse/core/config.h"

namespace metareuse {

RunLayout RunLayout::for_config(const Config& config) {
  std::string out_dir = config.get_string("run.out_dir");
  return RunLayout(out_dir.empty() ? "runs/" + config.get_string("run.name") : out_dir);
}

std::string RunLayout::checkpoint_folder(const Config& config) const {
  std::string dir = config.get_string("checkpoint.dir");
  return dir.empty() ? checkpoints() : dir;
}

// fs::path joins, as eval wrote these before: an --out with a trailing slash keeps one slash.
std::string RunLayout::eval_file_in(const std::string& eval_folder) {
  return (std::filesystem::path(eval_folder) / RunFile::kEvalFile).string();
}

std::string RunLayout::answers_in(const std::string& eval_folder) {
  return (std::filesystem::path(eval_folder) / RunFile::kAnswers).string();
}

std::string RunLayout::partial_answers_in(const std::string& eval_folder) {
  return (std::filesystem::path(eval_folder) / RunFile::kPartialAnswers).string();
}

}  // namespace metareuse
