// The names inside a checkpoint folder, torch-free so that the run folder's
// layout (run/layout.h) can name them without linking the checkpoint library.
#pragma once

#include <string_view>

namespace metareuse {

// The file naming the newest complete checkpoint of a folder (one line: its
// file name). The checkpoint library writes it last, atomically.
inline constexpr const char* kLatestPointer = "latest";

// True when `path` is "<folder>/" followed by kLatestPointer.
constexpr bool names_latest_pointer(std::string_view path, std::string_view folder) {
  return path.size() == folder.size() + 1 + std::string_view(kLatestPointer).size() &&
         path.substr(0, folder.size()) == folder && path[folder.size()] == '/' &&
         path.substr(folder.size() + 1) == kLatestPointer;
}

}  // namespace metareuse
