// Fault injection into HDF5 files for the integrity tests (test_checkpoint,
// test_dataset): bytes flipped inside a dataset's first chunk, which HDF5
// itself locates, so the damage lands in tensor data and not in metadata.
#pragma once

#include <hdf5.h>  // H5Dget_chunk_info

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace metareuse::test {

// The name of the first member of `group` (by name order).
inline std::string first_member(const std::filesystem::path& file_path, const std::string& group_name) {
  hid_t file = H5Fopen(file_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t group = H5Gopen2(file, group_name.c_str(), H5P_DEFAULT);
  ssize_t length = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, 0, nullptr, 0, H5P_DEFAULT);
  std::string name(static_cast<std::size_t>(std::max<ssize_t>(length, 0)), '\0');
  H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, 0, name.data(), name.size() + 1, H5P_DEFAULT);
  H5Gclose(group);
  H5Fclose(file);
  return name;
}

// XORs up to 200 bytes from a quarter into the first chunk of `dataset_path`
// ("tokens", "params/<name>"). Returns the chunk's size in bytes (> 8 or it throws).
inline unsigned long long flip_chunk_bytes(const std::filesystem::path& file_path, const std::string& dataset_path) {
  haddr_t address = 0;
  hsize_t size = 0;
  {
    hid_t file = H5Fopen(file_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dataset = H5Dopen2(file, dataset_path.c_str(), H5P_DEFAULT);
    hsize_t offset[8] = {};
    unsigned mask = 0;
    hid_t space = H5Dget_space(dataset);
    const herr_t found = H5Dget_chunk_info(dataset, space, 0, offset, &mask, &address, &size);
    H5Sclose(space);
    H5Dclose(dataset);
    H5Fclose(file);
    if (found < 0 || size <= 8) throw std::runtime_error("no chunk to damage in " + dataset_path);
  }
  std::fstream bytes(file_path, std::ios::in | std::ios::out | std::ios::binary);
  const hsize_t count = std::min<hsize_t>(200, size / 2);
  for (hsize_t i = 0; i < count; ++i) {
    bytes.seekg(static_cast<std::streamoff>(address + size / 4 + i));
    char c = 0;
    bytes.get(c);
    bytes.seekp(static_cast<std::streamoff>(address + size / 4 + i));
    bytes.put(static_cast<char>(c ^ 0x5a));
  }
  return size;
}

}  // namespace metareuse::test
