// Writing and loading the HDF5 dataset file, with the checks a loader owes
// its caller: readable, ours, this version, the right tokenizer, consistent.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "h5.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/dataset/dataset.h"

// Runs an HDF5 call; a negative result throws InputError naming the call,
// what it was for (`what`, e.g. the file and dataset) and the source line.
// (h5/h5.h's MR_CHECK_H5 throws Error; a dataset file HDF5 cannot read is
// bad input, named by `what`.)
#define MR_H5_CHECK(call, what)                                                                       \
  [&]() {                                                                                             \
    auto mr_h5_result = (call);                                                                       \
    if (mr_h5_result < 0) {                                                                           \
      const std::string mr_h5_detail = ::metareuse::h5_error_detail();                              \
      throw ::metareuse::InputError(::fmt::format("{}: HDF5 call {} failed ({}:{}){}{}", (what), #call, \
                                                  __FILE__, __LINE__, mr_h5_detail.empty() ? "" : ": ", \
                                                  mr_h5_detail));                                     \
    }                                                                                                 \
    return mr_h5_result;                                                                              \
  }()

namespace metareuse {

std::string DatasetMetadata::tokenizer_identity() const {
  return fmt::format("{}:{}:{}", tokenizer_kind, tokenizer_vocab_size, tokenizer_hash);
}

namespace {

void write_string_attribute(hid_t file, const std::string& path, const char* name, const std::string& value) {
  H5Handle type(MR_H5_CHECK(H5Tcopy(H5T_C_S1), path));
  MR_H5_CHECK(H5Tset_size(type.get(), std::max<std::size_t>(value.size(), 1)), path);
  MR_H5_CHECK(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), path);
  H5Handle space(MR_H5_CHECK(H5Screate(H5S_SCALAR), path));
  H5Handle attribute(MR_H5_CHECK(H5Acreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                               fmt::format("{} attribute '{}'", path, name)));
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  MR_H5_CHECK(H5Awrite(attribute.get(), type.get(), padded.data()), fmt::format("{} attribute '{}'", path, name));
}

template <typename T>
void write_number_attribute(hid_t file, const std::string& path, const char* name, T value, hid_t type) {
  H5Handle space(MR_H5_CHECK(H5Screate(H5S_SCALAR), path));
  H5Handle attribute(MR_H5_CHECK(H5Acreate2(file, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                               fmt::format("{} attribute '{}'", path, name)));
  MR_H5_CHECK(H5Awrite(attribute.get(), type, &value), fmt::format("{} attribute '{}'", path, name));
}

template <typename T>
void write_array(hid_t file, const std::string& path, const char* name, const std::vector<T>& data, hsize_t rows,
                 hsize_t columns, hid_t type) {
  const std::string what = fmt::format("{} dataset '{}'", path, name);
  hsize_t dims[2] = {rows, columns};
  H5Handle space(MR_H5_CHECK(H5Screate_simple(2, dims, nullptr), what));
  H5Handle properties(MR_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), what));
  // No modification times: the same data gives the same bytes, for any rank count.
  MR_H5_CHECK(H5Pset_obj_track_times(properties.get(), false), what);
  if (rows > 0 && columns > 0) {
    // Chunked and deflated: token arrays compress well and a chunk of rows
    // is what a loader reads.
    hsize_t chunk[2] = {std::min<hsize_t>(rows, 64), columns};
    MR_H5_CHECK(H5Pset_chunk(properties.get(), 2, chunk), what);
    MR_H5_CHECK(H5Pset_deflate(properties.get(), 1), what);
    // A Fletcher32 checksum per chunk: HDF5 verifies it on every read, so
    // flipped bytes are an error naming the dataset, not silently wrong tokens.
    MR_H5_CHECK(H5Pset_fletcher32(properties.get()), what);
  }
  H5Handle dataset(
      MR_H5_CHECK(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, properties.get(), H5P_DEFAULT), what));
  if (!data.empty()) MR_H5_CHECK(H5Dwrite(dataset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), what);
}

bool has_attribute(hid_t file, const char* name) { return H5Aexists(file, name) > 0; }

std::string read_string_attribute(hid_t file, const std::string& path, const char* name) {
  const std::string what = fmt::format("{} attribute '{}'", path, name);
  if (!has_attribute(file, name)) throw InputError(fmt::format("{}: attribute '{}' is missing", path, name));
  H5Handle attribute(MR_H5_CHECK(H5Aopen(file, name, H5P_DEFAULT), what));
  H5Handle type(MR_H5_CHECK(H5Aget_type(attribute.get()), what));
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0) {
    throw InputError(fmt::format("{} is not a fixed-length string", what));
  }
  std::size_t size = H5Tget_size(type.get());
  std::string value(size, '\0');
  MR_H5_CHECK(H5Aread(attribute.get(), type.get(), value.data()), what);
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

template <typename T>
T read_number_attribute(hid_t file, const std::string& path, const char* name, hid_t type) {
  const std::string what = fmt::format("{} attribute '{}'", path, name);
  if (!has_attribute(file, name)) throw InputError(fmt::format("{}: attribute '{}' is missing", path, name));
  H5Handle attribute(MR_H5_CHECK(H5Aopen(file, name, H5P_DEFAULT), what));
  T value{};
  MR_H5_CHECK(H5Aread(attribute.get(), type, &value), what);
  return value;
}

template <typename T>
std::vector<T> read_array(hid_t file, const std::string& path, const char* name, hsize_t rows, hsize_t columns,
                          hid_t type) {
  const std::string what = fmt::format("{} dataset '{}'", path, name);
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) throw InputError(fmt::format("{} is missing", what));
  H5Handle dataset(MR_H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT), what));
  H5Handle space(MR_H5_CHECK(H5Dget_space(dataset.get()), what));
  hsize_t dims[2] = {0, 0};
  int rank = MR_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), what);
  if (rank != 2) throw InputError(fmt::format("{} has {} dimensions, expected 2", what, rank));
  MR_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims, nullptr), what);
  if (dims[0] != rows || dims[1] != columns) {
    throw InputError(fmt::format("{} has shape ({}, {}), expected ({}, {})", what, dims[0], dims[1], rows, columns));
  }
  std::vector<T> data(static_cast<std::size_t>(rows * columns));
  if (!data.empty()) {
    if (H5Dread(dataset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0) {
      const bool checksum = h5_checksum_failed();
      throw InputError(fmt::format("{} cannot be read: {}; rebuild it with `metareuse prepare`", what,
                                   checksum ? "its Fletcher32 checksum does not match (the data is corrupted)"
                                            : "the file is truncated or damaged"));
    }
  }
  return data;
}

// The five arrays of a set of packed sequences, at `location` (the root, or /validation).
void write_sequences(hid_t location, const std::string& path, const PackedDataset& dataset) {
  const auto rows = static_cast<hsize_t>(dataset.sequences);
  const auto columns = static_cast<hsize_t>(dataset.metadata.sequence_length);
  write_array(location, path, "tokens", dataset.tokens, rows, columns, H5T_NATIVE_INT32);
  write_array(location, path, "loss_mask", dataset.loss_mask, rows, columns, H5T_NATIVE_UINT8);
  write_array(location, path, "segment_ids", dataset.segment_ids, rows, columns, H5T_NATIVE_INT32);
  write_array(location, path, "positions", dataset.positions, rows, columns, H5T_NATIVE_INT32);
  write_array(location, path, "documents", dataset.documents, static_cast<hsize_t>(dataset.metadata.documents), 4,
              H5T_NATIVE_INT64);
}

// The packing figures of a set of sequences, as attributes of `location`.
void write_packing_figures(hid_t location, const std::string& path, const DatasetMetadata& metadata) {
  write_number_attribute<std::int64_t>(location, path, "documents", metadata.documents, H5T_NATIVE_INT64);
  write_number_attribute<std::int64_t>(location, path, "dropped_documents", metadata.dropped_documents,
                                       H5T_NATIVE_INT64);
  write_number_attribute<std::int64_t>(location, path, "real_tokens", metadata.real_tokens, H5T_NATIVE_INT64);
  write_number_attribute<double>(location, path, "packing_efficiency", metadata.packing_efficiency,
                                 H5T_NATIVE_DOUBLE);
}

void read_packing_figures(hid_t location, const std::string& path, DatasetMetadata& metadata) {
  metadata.documents = read_number_attribute<std::int64_t>(location, path, "documents", H5T_NATIVE_INT64);
  metadata.dropped_documents =
      read_number_attribute<std::int64_t>(location, path, "dropped_documents", H5T_NATIVE_INT64);
  metadata.real_tokens = read_number_attribute<std::int64_t>(location, path, "real_tokens", H5T_NATIVE_INT64);
  metadata.packing_efficiency = read_number_attribute<double>(location, path, "packing_efficiency", H5T_NATIVE_DOUBLE);
}

// The sequence count of `location`'s tokens (rows), checked to be two-dimensional.
std::int64_t sequences_at(hid_t location, const std::string& what) {
  if (H5Lexists(location, "tokens", H5P_DEFAULT) <= 0) throw InputError(fmt::format("{} is missing", what));
  H5Handle tokens(MR_H5_CHECK(H5Dopen2(location, "tokens", H5P_DEFAULT), what));
  H5Handle space(MR_H5_CHECK(H5Dget_space(tokens.get()), what));
  hsize_t dims[2] = {0, 0};
  if (MR_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), what) != 2) {
    throw InputError(fmt::format("{} is not two-dimensional", what));
  }
  MR_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims, nullptr), what);
  return static_cast<std::int64_t>(dims[0]);
}

// Reads the five arrays at `location` into `dataset` (its metadata and
// sequence count already set) and checks every id against the vocabulary.
// `path` names the file, `where` the group in messages ("" for the root).
void read_sequences(hid_t location, const std::string& path, const std::string& where, PackedDataset& dataset) {
  const DatasetMetadata& metadata = dataset.metadata;
  const std::string named = path + where;
  const auto rows = static_cast<hsize_t>(dataset.sequences);
  const auto columns = static_cast<hsize_t>(metadata.sequence_length);
  dataset.tokens = read_array<TokenId>(location, named, "tokens", rows, columns, H5T_NATIVE_INT32);
  dataset.loss_mask = read_array<std::uint8_t>(location, named, "loss_mask", rows, columns, H5T_NATIVE_UINT8);
  dataset.segment_ids = read_array<std::int32_t>(location, named, "segment_ids", rows, columns, H5T_NATIVE_INT32);
  dataset.positions = read_array<std::int32_t>(location, named, "positions", rows, columns, H5T_NATIVE_INT32);
  dataset.documents = read_array<std::int64_t>(location, named, "documents", static_cast<hsize_t>(metadata.documents),
                                               4, H5T_NATIVE_INT64);
  for (std::size_t i = 0; i < dataset.tokens.size(); ++i) {
    if (dataset.tokens[i] < 0 || dataset.tokens[i] >= metadata.tokenizer_vocab_size) {
      throw InputError(fmt::format("{}: token id {} at {}sequence {}, position {} is outside the vocabulary ({})", path,
                                   dataset.tokens[i], where.empty() ? "" : "validation ", i / columns, i % columns,
                                   metadata.tokenizer_vocab_size));
    }
  }
}

}  // namespace

void write_dataset(const std::string& path, const PackedDataset& dataset, const PackedDataset* validation) {
  h5_quiet_errors();  // not HDF5's own error stack on stderr: our messages name the file
  const DatasetMetadata& metadata = dataset.metadata;
  prepare_output_file(path);  // "cannot create <path>: reason", not an HDF5 call trace
  // Written under a temporary name and renamed, so a reader never sees half a file.
  const std::string temporary = path + ".partial";
  try {
    H5Handle creation(MR_H5_CHECK(H5Pcreate(H5P_FILE_CREATE), temporary));
    MR_H5_CHECK(H5Pset_obj_track_times(creation.get(), false), temporary);  // the root group's times too
    H5Handle file(
        MR_H5_CHECK(H5Fcreate(temporary.c_str(), H5F_ACC_TRUNC, creation.get(), H5P_DEFAULT), temporary));
    hid_t root = file.get();
    write_string_attribute(root, path, "magic", kDatasetMagic);
    write_number_attribute<std::int64_t>(root, path, "format_version", metadata.format_version, H5T_NATIVE_INT64);
    write_string_attribute(root, path, "tokenizer_kind", metadata.tokenizer_kind);
    write_number_attribute<std::int64_t>(root, path, "tokenizer_vocab_size", metadata.tokenizer_vocab_size,
                                         H5T_NATIVE_INT64);
    write_string_attribute(root, path, "tokenizer_hash", metadata.tokenizer_hash);
    write_string_attribute(root, path, "patterns_hash", metadata.patterns_hash);
    write_string_attribute(root, path, "template", metadata.template_name);
    write_number_attribute<std::int64_t>(root, path, "sequence_length", metadata.sequence_length, H5T_NATIVE_INT64);
    write_number_attribute<std::int32_t>(root, path, "pad_id", metadata.pad_id, H5T_NATIVE_INT32);
    write_string_attribute(root, path, "config", metadata.config_json);
    write_packing_figures(root, path, metadata);
    write_sequences(root, path, dataset);
    // Version 1 had no validation (a version-1 file is written only to test that it still loads).
    if (metadata.format_version >= 2) {
      write_number_attribute<double>(root, path, "validation_share", metadata.validation_share, H5T_NATIVE_DOUBLE);
      if (validation != nullptr) {
        const std::string group_path = path + " /validation";
        H5Handle group_creation(MR_H5_CHECK(H5Pcreate(H5P_GROUP_CREATE), group_path));
        MR_H5_CHECK(H5Pset_obj_track_times(group_creation.get(), false), group_path);
        H5Handle group(MR_H5_CHECK(
            H5Gcreate2(root, "validation", H5P_DEFAULT, group_creation.get(), H5P_DEFAULT), group_path));
        write_packing_figures(group.get(), group_path, validation->metadata);
        write_sequences(group.get(), group_path, *validation);
      }
    }
    // The close writes the last chunks and metadata: checked, so a full disk
    // or a file-size limit is reported here rather than leaving a cut-off file.
    MR_H5_CHECK(H5Fflush(root, H5F_SCOPE_GLOBAL), temporary);
    if (H5Fclose(file.release()) < 0) {
      throw Error(fmt::format("HDF5 could not complete {} (disk full or a file-size limit?)", temporary));
    }
  } catch (const std::exception& e) {
    remove_quietly(temporary);  // the previous dataset, if any, stays as it was
    throw Error(fmt::format("cannot write {}: {}", path, e.what()));
  }
  commit_temporary(temporary, path);
}

DatasetFile load_dataset_file(const std::string& path, const DatasetExpectations& expectations) {
  h5_quiet_errors();  // not HDF5's own error stack on stderr: our messages name the file
  if (!std::filesystem::exists(path)) throw InputError(fmt::format("{}: dataset file not found{}", path, looked_for(path)));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw InputError(fmt::format("{}: not a readable HDF5 file (truncated, or not made by `metareuse prepare`)", path));
  }
  hid_t file_id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_id < 0) {
    throw InputError(fmt::format("{}: HDF5 cannot open it (truncated or damaged); rebuild it with `metareuse prepare`",
                                 path));
  }
  H5Handle file(file_id);
  hid_t root = file.get();
  const std::string hint = "rebuild it with `metareuse prepare`";
  if (!has_attribute(root, "magic") || read_string_attribute(root, path, "magic") != kDatasetMagic) {
    throw InputError(fmt::format("{}: not a metareuse tokenized dataset (no '{}' magic)", path, kDatasetMagic));
  }
  PackedDataset dataset;
  DatasetMetadata& metadata = dataset.metadata;
  metadata.format_version = read_number_attribute<std::int64_t>(root, path, "format_version", H5T_NATIVE_INT64);
  if (metadata.format_version < kDatasetOldestReadableVersion || metadata.format_version > kDatasetFormatVersion) {
    throw InputError(fmt::format("{}: dataset format version {}, but this build reads versions {} to {}; {}", path,
                                 metadata.format_version, kDatasetOldestReadableVersion, kDatasetFormatVersion, hint));
  }
  metadata.tokenizer_kind = read_string_attribute(root, path, "tokenizer_kind");
  metadata.tokenizer_vocab_size =
      read_number_attribute<std::int64_t>(root, path, "tokenizer_vocab_size", H5T_NATIVE_INT64);
  metadata.tokenizer_hash = read_string_attribute(root, path, "tokenizer_hash");
  metadata.patterns_hash = read_string_attribute(root, path, "patterns_hash");
  metadata.template_name = read_string_attribute(root, path, "template");
  metadata.sequence_length = read_number_attribute<std::int64_t>(root, path, "sequence_length", H5T_NATIVE_INT64);
  metadata.pad_id = read_number_attribute<std::int32_t>(root, path, "pad_id", H5T_NATIVE_INT32);
  metadata.config_json = read_string_attribute(root, path, "config");
  read_packing_figures(root, path, metadata);
  if (metadata.format_version >= 2) {
    metadata.validation_share = read_number_attribute<double>(root, path, "validation_share", H5T_NATIVE_DOUBLE);
  }

  if (expectations.tokenizer_identity && *expectations.tokenizer_identity != metadata.tokenizer_identity()) {
    throw InputError(fmt::format("{}: made with tokenizer {}, but this run uses {}; {} with this tokenizer", path,
                                 metadata.tokenizer_identity(), *expectations.tokenizer_identity, hint));
  }
  if (expectations.model_vocab_size && metadata.tokenizer_vocab_size > *expectations.model_vocab_size) {
    throw InputError(fmt::format("{}: tokenizer vocabulary {} exceeds the model's {} embedding rows", path,
                                 metadata.tokenizer_vocab_size, *expectations.model_vocab_size));
  }
  if (metadata.sequence_length <= 0) throw InputError(fmt::format("{}: sequence_length {} is not positive", path,
                                                                  metadata.sequence_length));

  dataset.sequences = sequences_at(root, fmt::format("{} dataset 'tokens'", path));
  if (dataset.sequences == 0) {
    throw InputError(fmt::format("{}: the dataset holds no sequences (no document fitted its sequence length {}); {}",
                                 path, metadata.sequence_length, hint));
  }
  read_sequences(root, path, "", dataset);
  DatasetFile loaded;
  if (metadata.format_version >= 2 && metadata.validation_share > 0) {
    const std::string group_path = path + " /validation";
    if (H5Lexists(root, "validation", H5P_DEFAULT) <= 0) {
      throw InputError(fmt::format("{}: validation_share is {} but the /validation group is missing; {}", path,
                                   metadata.validation_share, hint));
    }
    H5Handle group(MR_H5_CHECK(H5Gopen2(root, "validation", H5P_DEFAULT), group_path));
    PackedDataset validation;
    validation.metadata = metadata;
    read_packing_figures(group.get(), group_path, validation.metadata);
    validation.sequences = sequences_at(group.get(), fmt::format("{} dataset 'tokens'", group_path));
    read_sequences(group.get(), path, " /validation", validation);
    loaded.validation = std::move(validation);
  }
  loaded.training = std::move(dataset);
  return loaded;
}

PackedDataset load_dataset(const std::string& path, const DatasetExpectations& expectations) {
  return load_dataset_file(path, expectations).training;
}

}  // namespace metareuse
