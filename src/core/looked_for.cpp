#include "metareuse/core/looked_for.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace metareuse {
namespace fs = std::filesystem;

std::string absolute_text(const std::string& path) {
  std::error_code error;
  fs::path absolute = fs::absolute(path, error);
  return error ? path : absolute.lexically_normal().string();
}

std::string looked_for(const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return "";
  return " (looked for " + absolute_text(path) + ")";
}

std::string why_unreadable(const std::string& path) {
  std::error_code error;
  if (!fs::exists(path, error)) return std::string("no such file or directory") + looked_for(path);
  if (fs::is_directory(path, error)) return "it is a directory" + looked_for(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno) + looked_for(path);
  ::close(fd);
  return "it cannot be read" + looked_for(path);
}

std::string not_found_among(std::string_view what, const std::vector<std::string>& tried) {
  std::string text = std::string(what) + " not found; looked for: ";
  for (std::size_t i = 0; i < tried.size(); ++i) text += (i > 0 ? ", " : "") + absolute_text(tried[i]);
  return text;
}

}  // namespace metareuse
