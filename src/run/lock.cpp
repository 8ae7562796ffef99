// flock(2) by hand: the packaged alternatives (boost::interprocess's
// file_lock) add a dependency for the same call and do not write the holder.
#include "metareuse/run/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"

namespace metareuse {
namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

std::string read_holder(int fd) {
  char text[512] = {};
  ssize_t size = ::pread(fd, text, sizeof(text) - 1, 0);
  std::string holder = size > 0 ? std::string(text, static_cast<std::size_t>(size)) : std::string();
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  return holder;
}

}  // namespace

RunFolderLock::RunFolderLock(const std::string& lock_file) : path_(lock_file) {
  prepare_output_file(path_);
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(fmt::format("cannot create {}: {}", path_, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int saved = errno;
    std::string holder = read_holder(fd_);
    ::close(fd_);
    fd_ = -1;
    if (saved == EWOULDBLOCK) {
      throw Error(fmt::format("the run folder is in use: {} is held by {}; wait for that job to end, or give this "
                              "one another run.out_dir",
                              path_, holder.empty() ? "another process" : holder));
    }
    throw Error(fmt::format("cannot lock {}: {}", path_, std::strerror(saved)));
  }
  const std::string previous = read_holder(fd_);
  if (!previous.empty()) {
    // The file outlived its holder (a crash, a SIGKILL): its flock went with it.
    log_warn("{}: taking over the lock left by {}, which no longer holds it (a job that ended without cleaning up)",
              path_, previous);
  }
  const std::string me = fmt::format("host {} pid {}\n", host_name(), ::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    throw_write_error(path_, errno);
  }
}

RunFolderLock::~RunFolderLock() { release(); }

void RunFolderLock::release() {
  if (fd_ < 0) return;
  // Emptied before the unlock: a lock file that names a holder then always
  // means a process that did not end cleanly. A failed truncate only costs a
  // warning at the next start; the flock is released either way.
  [[maybe_unused]] int ignored = ::ftruncate(fd_, 0);
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
  fd_ = -1;
}

RunFolderLock::RunFolderLock(RunFolderLock&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

RunFolderLock& RunFolderLock::operator=(RunFolderLock&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

bool run_folder_in_use(const std::string& lock_file) {
  const int fd = ::open(lock_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    throw Error(fmt::format("cannot open {}: {}", lock_file, std::strerror(errno)));
  }
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // drops the shared lock, if taken
  return held;
}

}  // namespace metareuse
