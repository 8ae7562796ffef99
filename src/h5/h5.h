// RAII for HDF5 ids and the check for HDF5 calls, shared by src/checkpoint
// and src/dataset (included as "h5/h5.h").
#pragma once

#include <hdf5.h>

#include <string>

namespace metareuse {

// Throws metareuse::Error naming the call, file:line and HDF5's own message.
[[noreturn]] void h5_throw_error(const char* call, const char* file, int line);

// Owns one HDF5 id; closes it with the matching H5*close.
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(hid_t id) : id_(id) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& other) noexcept : id_(other.id_) { other.id_ = H5I_INVALID_HID; }
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      other.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  void reset();
  // Gives up ownership (for a close whose result the caller checks).
  hid_t release() {
    hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// Silences HDF5's own stderr error printing (errors are reported by exceptions).
void h5_quiet_errors();

// What went wrong at the bottom of HDF5's error stack (from the call that
// just failed): the system's message ("File too large") when a write or read
// failed, else the innermost description. Empty when the stack is empty.
std::string h5_error_detail();

// True when the error on HDF5's stack (from the call that just failed) came
// from the Fletcher32 filter, i.e. stored data no longer matches its checksum.
// Clears the stack.
bool h5_checksum_failed();

}  // namespace metareuse

// For calls returning an id: checks it and wraps it in a H5Handle.
#define MR_H5_ID(call)                                                  \
  ([&]() {                                                              \
    hid_t mr_h5_id_ = (call);                                           \
    if (mr_h5_id_ < 0) ::metareuse::h5_throw_error(#call, __FILE__, __LINE__); \
    return ::metareuse::H5Handle(mr_h5_id_);                          \
  }())
// For calls returning herr_t.
#define MR_CHECK_H5(call)                                                 \
  do {                                                                    \
    if ((call) < 0) ::metareuse::h5_throw_error(#call, __FILE__, __LINE__); \
  } while (0)
