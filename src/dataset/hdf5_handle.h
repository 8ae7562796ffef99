// RAII for HDF5 ids and one checking macro for every HDF5 call.
#pragma once

#include <hdf5.h>  // the HDF5 C API

#include <fmt/format.h>

#include "metareuse/core/error.h"

namespace metareuse::dataset_detail {

// Owns one HDF5 id; closes it with the matching H5*close.
class Hdf5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Hdf5Handle() = default;
  Hdf5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Hdf5Handle() { reset(); }
  Hdf5Handle(Hdf5Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = -1; }
  Hdf5Handle& operator=(Hdf5Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      closer_ = other.closer_;
      other.id_ = -1;
    }
    return *this;
  }
  Hdf5Handle(const Hdf5Handle&) = delete;
  Hdf5Handle& operator=(const Hdf5Handle&) = delete;

  hid_t get() const { return id_; }
  void reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

}  // namespace metareuse::dataset_detail

// Runs an HDF5 call; a negative result throws InputError naming the call,
// what it was for (`what`, e.g. the file and dataset) and the source line.
#define MR_H5_CHECK(call, what)                                                                       \
  [&]() {                                                                                             \
    auto mr_h5_result = (call);                                                                       \
    if (mr_h5_result < 0) {                                                                           \
      throw ::metareuse::InputError(::fmt::format("{}: HDF5 call {} failed ({}:{})", (what), #call,   \
                                                  __FILE__, __LINE__));                               \
    }                                                                                                 \
    return mr_h5_result;                                                                              \
  }()
