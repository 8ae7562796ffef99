// Checked writes, shared by every stage that writes a file: every write and
// the final close are checked, a short write / ENOSPC / EFBIG is an error
// naming the file, output goes to a temporary that is renamed over the target
// only when complete (the previous output stays intact on any failure), and
// the temporary is removed when the write fails.
#pragma once

#include <string>
#include <string_view>

namespace metareuse {

// Ignores SIGXFSZ, so that a file-size limit (`ulimit -f`) fails a write with
// EFBIG (reported, naming the file) instead of killing the process. Called once
// at startup by both binaries.
void ignore_file_size_signal();

// Checks that `path` can be created as a file and creates its missing parent
// folders; throws "cannot create <path>: <reason>" when it is a directory, or
// its folder is missing and cannot be made, or is not writable.
void prepare_output_file(const std::string& path);

// Throws "cannot write <path>: <strerror>" (with a hint for ENOSPC/EFBIG).
[[noreturn]] void throw_write_error(const std::string& path, int error_number);

// Durably replaces `path` with an already written temporary file (for writers
// that own their file, such as HDF5): fsync it, rename it, fsync the folder.
// On failure the temporary is removed and the error names the file.
void commit_temporary(const std::string& temporary, const std::string& path);

// Removes a file if it exists, ignoring errors (cleanup on a failure path).
void remove_quietly(const std::string& path);

// A file written under `<path>.tmp` and renamed to `path` by commit(). If
// commit() is never reached (an exception, a failed write), the destructor
// removes the temporary and `path` keeps its previous content.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path, std::string temporary_suffix = ".tmp");
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view bytes);
  // Flushes, fsyncs, closes (checked), renames over the target, fsyncs the folder.
  void commit();
  // Flushes and closes without renaming (the temporary is kept; for part files
  // that another step joins). Returns the temporary's path.
  void close_keep();

  const std::string& path() const { return path_; }
  const std::string& temporary() const { return temporary_; }

 private:
  void flush_buffer();
  std::string path_;
  std::string temporary_;
  std::string buffer_;
  int fd_ = -1;
  bool done_ = false;
};

// The whole of `content` into `path`, atomically (AtomicFile).
void write_file_atomic(const std::string& path, std::string_view content);

// A file opened for appending (metrics.jsonl): each write() is checked and
// reaches the file before it returns.
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const std::string& path, bool truncate);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void open(const std::string& path, bool truncate);
  void write(std::string_view bytes);
  bool is_open() const { return fd_ >= 0; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace metareuse
