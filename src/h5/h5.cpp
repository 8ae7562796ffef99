#include "h5.h"

#include <fmt/format.h>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

herr_t collect_message(unsigned depth, const H5E_error2_t* error, void* data) {
  auto* text = static_cast<std::string*>(data);
  if (depth == 0 && error->desc != nullptr) *text = error->desc;
  return 0;
}

// HDF5 closes every open id when the process exits. A file whose close failed
// (disk full mid-write) stays open in the library, and closing it again at exit
// crashes inside HDF5 1.10; the operating system releases it anyway.
[[maybe_unused]] const bool kNoAtexit = (H5dont_atexit(), true);

}  // namespace

void h5_throw_error(const char* call, const char* file, int line) {
  std::string detail;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_message, &detail);
  if (std::string system = h5_error_detail(); !system.empty() && system != detail) detail += ": " + system;
  H5Eclear2(H5E_DEFAULT);
  throw Error(fmt::format("HDF5 call {} failed at {}:{}{}{}", call, file, line, detail.empty() ? "" : ": ", detail));
}

void H5Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: break;
  }
  id_ = H5I_INVALID_HID;
}

namespace {
herr_t find_checksum_error(unsigned, const H5E_error2_t* error, void* data) {
  if (error->desc != nullptr && std::string(error->desc).find("Fletcher32") != std::string::npos) {
    *static_cast<bool*>(data) = true;
  }
  return 0;
}
}  // namespace

static herr_t keep_innermost(unsigned, const H5E_error2_t* error, void* data) {
  if (error->desc != nullptr && *error->desc != '\0') *static_cast<std::string*>(data) = error->desc;
  return 0;
}

std::string h5_error_detail() {
  std::string innermost;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &innermost);
  // The sec2 driver writes "..., errno = 27, error message = 'File too large', ...".
  const std::string marker = "error message = '";
  auto start = innermost.find(marker);
  if (start != std::string::npos) {
    start += marker.size();
    return innermost.substr(start, innermost.find('\'', start) - start);
  }
  return innermost;
}

bool h5_checksum_failed() {
  bool found = false;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_checksum_error, &found);
  H5Eclear2(H5E_DEFAULT);
  return found;
}

void h5_quiet_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

}  // namespace metareuse
