// The answer log of the stages that generate (answer_log.h).
#include "metareuse/core/answer_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"  // prepare_output_file, throw_write_error
#include "metareuse/core/log.h"

namespace metareuse {
namespace fs = std::filesystem;
using json = nlohmann::json;

json answer_log_file(const std::string& path) {
  auto stamp = [](const fs::path& file) {
    std::error_code error;
    return json::array({fs::file_size(file, error), fs::last_write_time(file, error).time_since_epoch().count()});
  };
  std::error_code error;
  if (fs::is_regular_file(path, error)) return {{"path", path}, {"file", stamp(path)}};
  json files = json::object();
  if (fs::is_directory(path, error)) {
    for (const fs::directory_entry& entry : fs::directory_iterator(path, error)) {
      if (entry.is_regular_file(error)) files[entry.path().filename().string()] = stamp(entry.path());
    }
  }
  return {{"path", path}, {"files", files}};
}

json answer_log_model(const std::string& path, const std::string& description) {
  json model = answer_log_file(path);
  model["source"] = description;
  return model;
}

std::vector<json> read_back_answer_log(const std::string& path, const json& header, const std::string& stage) {
  std::vector<json> lines;
  std::ifstream in(path, std::ios::binary);
  if (!in) return lines;
  std::string line;
  std::uint64_t whole_bytes = 0;
  bool first = true;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it: a part line
    json parsed = json::parse(line, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) break;
    if (first) {
      if (parsed != header) {
        log_warn("{}: {} holds answers from another model or other options; starting over", stage, path);
        return {};
      }
      first = false;
    } else {
      lines.push_back(std::move(parsed));
    }
    whole_bytes += line.size() + 1;
  }
  in.close();
  if (first) return {};
  std::error_code error;
  if (fs::file_size(path, error) != whole_bytes) fs::resize_file(path, whole_bytes, error);
  if (error) throw InputError(fmt::format("{}: cannot cut the file back to its whole lines: {}", path, error.message()));
  return lines;
}

AnswerLog::AnswerLog(const std::string& path, bool fresh, const json& header) : path_(path) {
  prepare_output_file(path);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0644);
  if (fd_ < 0) throw_write_error(path, errno);
  if (fresh) append(header.dump() + "\n");
}

AnswerLog::~AnswerLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AnswerLog::append(const std::string& lines) {
  std::size_t done = 0;
  while (done < lines.size()) {
    const ssize_t wrote = ::write(fd_, lines.data() + done, lines.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) throw_write_error(path_, wrote < 0 ? errno : ENOSPC);
    done += static_cast<std::size_t>(wrote);
  }
  if (::fsync(fd_) != 0) throw_write_error(path_, errno);
}

}  // namespace metareuse
