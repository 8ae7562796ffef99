// The one wording of "cannot find" for every input a user names or that is
// searched for (configs, corpora, tokenizers, models, checkpoints, handbooks,
// datasets, questions): the message names the path as given and, when it is
// relative, the absolute path it was looked for at. Relative paths are read
// from the current folder (README part 5), so that is what the message shows.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace metareuse {

// `path` made absolute (from the current folder) and normalized.
std::string absolute_text(const std::string& path);

// " (looked for <absolute path>)" when `path` is relative, "" when absolute
// (an absolute path already says where it was looked for).
std::string looked_for(const std::string& path);

// Why `path` cannot be read as a file, with where it was looked for: "no such
// file or directory (looked for /abs/x)", "it is a directory", or the system's
// reason (permission denied, ...).
std::string why_unreadable(const std::string& path);

// "<what> not found; looked for: <a>, <b>, ..." for an input searched among
// candidates (each named by its absolute path).
std::string not_found_among(std::string_view what, const std::vector<std::string>& tried);

}  // namespace metareuse
