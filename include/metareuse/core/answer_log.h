// Answers that outlive a stopped or failed run: the stages that generate
// (eval, distill, reflect mode's patterns) work in rounds (distributed/rounds.h),
// rank 0 appends each round's answers to an answer log, and a run started
// again reads them back and generates only the rest.
//
// The log is JSON Lines. Its first line is a header naming the models and the
// options that made the answers; a log with another header holds answers that
// must not be reused, and the run starts over. Every append is written whole
// and fsynced before the next round starts, so a kill loses at most the round
// in flight (a part line at the end, cut when the log is read back).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>


namespace metareuse {

// A file or folder as a header names it: its path and the size and time of
// the file, or of each file directly in the folder (a checkpoint folder's
// checkpoints, a Hugging Face folder's weights), so answers made from one
// since rewritten are not reused.
nlohmann::json answer_log_file(const std::string& path);
// A model: its answer_log_file and its source's description.
nlohmann::json answer_log_model(const std::string& path, const std::string& description);

// The lines after the header of the log at `path` when its header is
// `header`; none when the file is missing, empty or has another header (with a
// warning naming `stage`). The file is cut back to its last whole line.
std::vector<nlohmann::json> read_back_answer_log(const std::string& path, const nlohmann::json& header,
                                                 const std::string& stage);

// The log, open for appending. `fresh`: truncated and started with the header
// (nothing was read back); else appended to.
class AnswerLog {
 public:
  AnswerLog(const std::string& path, bool fresh, const nlohmann::json& header);
  ~AnswerLog();
  AnswerLog(const AnswerLog&) = delete;
  AnswerLog& operator=(const AnswerLog&) = delete;

  // Whole lines ("...\n"), written and fsynced; a failed write throws.
  void append(const std::string& lines);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace metareuse
