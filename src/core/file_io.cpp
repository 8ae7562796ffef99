// Written by hand: no packaged library (Debian or otherwise) gives checked,
// atomic file replacement with errors naming the file; this is POSIX
// open/write/fsync/rename with every result checked.
#include "metareuse/core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "metareuse/core/error.h"

namespace metareuse {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kBufferBytes = 1 << 20;

std::string reason_for(int error_number) {
  std::string reason = std::strerror(error_number);
  if (error_number == EFBIG) reason += " (a file-size limit, `ulimit -f`, or the file system's maximum file size)";
  if (error_number == ENOSPC) reason += " (the disk is full)";
  if (error_number == EDQUOT) reason += " (the disk quota is exhausted)";
  return reason;
}

// Writes all of `bytes`, retrying short writes; a write that makes no
// progress or fails throws naming `path`.
void write_all(int fd, const char* data, std::size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw_write_error(path, errno);
    }
    if (written == 0) throw_write_error(path, ENOSPC);
    data += written;
    size -= static_cast<std::size_t>(written);
  }
}

void fsync_folder(const std::string& path) {
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // the rename is done; a folder we cannot open to fsync is not a lost file
  ::fsync(fd);
  ::close(fd);
}

int open_for_writing(const std::string& path, int flags) {
  prepare_output_file(path);
  int fd = ::open(path.c_str(), flags | O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  return fd;
}

}  // namespace

void ignore_file_size_signal() { std::signal(SIGXFSZ, SIG_IGN); }

void prepare_output_file(const std::string& path) {
  if (path.empty()) throw Error("cannot create an output file with an empty name");
  std::error_code error;
  if (fs::is_directory(path, error)) throw Error(fmt::format("cannot create {}: it is a directory", path));
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  if (!fs::exists(folder, error)) {
    fs::create_directories(folder, error);
    if (error) throw Error(fmt::format("cannot create {}: its folder {} cannot be made: {}", path, folder.string(),
                                       error.message()));
  } else if (!fs::is_directory(folder, error)) {
    throw Error(fmt::format("cannot create {}: {} is not a directory", path, folder.string()));
  }
  if (::access(folder.c_str(), W_OK) != 0) {
    throw Error(fmt::format("cannot create {}: folder {} is not writable: {}", path, folder.string(),
                            std::strerror(errno)));
  }
}

void throw_write_error(const std::string& path, int error_number) {
  throw Error(fmt::format("cannot write {}: {}", path, reason_for(error_number)));
}

void remove_quietly(const std::string& path) {
  std::error_code ignored;
  fs::remove(path, ignored);
}

void commit_temporary(const std::string& temporary, const std::string& path) {
  int fd = ::open(temporary.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int saved = errno;
    remove_quietly(temporary);
    throw_write_error(temporary, saved);
  }
  int status = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (status != 0) {
    remove_quietly(temporary);
    throw_write_error(temporary, saved);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    saved = errno;
    remove_quietly(temporary);
    throw Error(fmt::format("cannot create {}: renaming {} onto it failed: {}", path, temporary, std::strerror(saved)));
  }
  fsync_folder(path);
}

AtomicFile::AtomicFile(std::string path, std::string temporary_suffix)
    : path_(std::move(path)), temporary_(path_ + temporary_suffix) {
  prepare_output_file(path_);
  fd_ = open_for_writing(temporary_, O_TRUNC);
  buffer_.reserve(kBufferBytes);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) remove_quietly(temporary_);
}

void AtomicFile::flush_buffer() {
  if (buffer_.empty()) return;
  write_all(fd_, buffer_.data(), buffer_.size(), temporary_);
  buffer_.clear();
}

void AtomicFile::write(std::string_view bytes) {
  if (fd_ < 0) throw Error(fmt::format("{}: written after it was closed", temporary_));
  if (buffer_.size() + bytes.size() > kBufferBytes) flush_buffer();
  if (bytes.size() >= kBufferBytes) {
    write_all(fd_, bytes.data(), bytes.size(), temporary_);
  } else {
    buffer_.append(bytes);
  }
}

void AtomicFile::close_keep() {
  flush_buffer();
  if (::fsync(fd_) != 0) throw_write_error(temporary_, errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw_write_error(temporary_, errno);
}

void AtomicFile::commit() {
  close_keep();
  if (std::rename(temporary_.c_str(), path_.c_str()) != 0) {
    throw Error(fmt::format("cannot create {}: renaming {} onto it failed: {}", path_, temporary_,
                            std::strerror(errno)));
  }
  done_ = true;
  fsync_folder(path_);
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile file(path);
  file.write(content);
  file.commit();
}

AppendFile::AppendFile(const std::string& path, bool truncate) { open(path, truncate); }

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::open(const std::string& path, bool truncate) {
  if (fd_ >= 0) ::close(fd_);
  path_ = path;
  fd_ = open_for_writing(path, O_APPEND | (truncate ? O_TRUNC : 0));
}

void AppendFile::write(std::string_view bytes) {
  if (fd_ < 0) throw Error(fmt::format("{}: written before it was opened", path_));
  write_all(fd_, bytes.data(), bytes.size(), path_);
}

}  // namespace metareuse
