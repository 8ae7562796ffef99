// One run folder, one job: `metareuse run` and `train` hold <run>/run.lock
// (an flock, released by the kernel when the process ends, however it ends)
// for as long as they write into the folder. The file names the holder's host
// and pid, so a second job fails at once naming them; a lock file left by a
// dead process (its flock is gone) is taken over with a warning.
#pragma once

#include <string>

namespace metareuse {

class RunFolderLock {
 public:
  RunFolderLock() = default;
  // Takes the lock on `lock_file`; throws naming the holder when another
  // process holds it.
  explicit RunFolderLock(const std::string& lock_file);
  ~RunFolderLock();
  RunFolderLock(RunFolderLock&& other) noexcept;
  RunFolderLock& operator=(RunFolderLock&& other) noexcept;
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

  bool held() const { return fd_ >= 0; }

 private:
  void release();
  std::string path_;
  int fd_ = -1;
};

// Whether a process holds `lock_file` now (a job is writing the run folder):
// a shared flock taken and dropped at once, which a holder's exclusive lock
// refuses. A missing file is not held. Throws naming the file when it cannot
// be opened for another reason.
bool run_folder_in_use(const std::string& lock_file);

}  // namespace metareuse
