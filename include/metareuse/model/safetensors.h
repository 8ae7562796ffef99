// Safetensors files, read through mmap and written so Hugging Face loads them.
//
// Hand-written because Debian packages no C++ safetensors library. The format
// (https://huggingface.co/docs/safetensors) is small: an 8-byte little-endian
// header length N, N bytes of JSON
//   {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// and then the raw little-endian tensor data, offsets relative to its start.
//
// Every error names the file, and the tensor when there is one.
#pragma once

#include <torch/types.h>  // torch::Tensor, torch::ScalarType

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace metareuse {

// A read-only memory map of a whole file, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the mapped pages of bytes [begin, end) from this process's memory
  // once they have been copied out: a later read faults them in from the file
  // again. Without it every weight is resident twice while a model loads (the
  // map and the tensor), so the peak RSS counts the file once more.
  void release(std::size_t begin, std::size_t end) const;

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

struct SafetensorsEntry {
  std::string name;
  std::string dtype;                 // as in the file: "F32", "BF16", "I64", ...
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;           // byte offsets into the data section
  std::uint64_t end = 0;
};

// One .safetensors file. The header is parsed and checked on open (dtypes
// known, byte sizes matching shapes, offsets inside the file); tensor data is
// copied out of the map only when asked for.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming tensor and file
  std::vector<std::string> names() const;                        // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor as a fresh CPU tensor. Floating data (F64, F32, F16, BF16) is
  // converted to `dtype` when given; integer and bool data keep their type
  // (asking to convert them is an error). BF16/F32/F64 -> F16 throws, naming
  // the tensor, when a finite value lies outside fp16's range (|x| > 65504),
  // instead of silently producing infinities.
  torch::Tensor tensor(const std::string& name, std::optional<torch::ScalarType> dtype = std::nullopt) const;

 private:
  MappedFile file_;
  std::uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: one .safetensors file, or a folder holding model.safetensors
// or model.safetensors.index.json and its shards.
class SafetensorsCheckpoint {
 public:
  // `path`: a .safetensors file, an index .json file, or a folder.
  explicit SafetensorsCheckpoint(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return file_of_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;  // path of the shard holding it
  torch::Tensor tensor(const std::string& name, std::optional<torch::ScalarType> dtype = std::nullopt) const;
  std::string description() const;  // "model.safetensors" or "<index> (N shards)"

 private:
  std::string description_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::size_t> file_of_;  // tensor name -> index into files_
};

// Writes one file as the reference writer (Python safetensors) does: tensors
// ordered by dtype then name, contiguous, little-endian; the header JSON
// compact with __metadata__ {"format": "pt"} (plus `metadata`) first, padded
// with spaces to a multiple of 8 bytes. transformers refuses files without
// format "pt". For the same tensors the bytes equal save_pretrained's.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes a Hugging Face checkpoint into `folder`: model.safetensors when it all
// fits in `max_shard_bytes`, else model-0000i-of-0000N.safetensors plus
// model.safetensors.index.json {"metadata": {"total_size": ..}, "weight_map": {..}},
// splitting greedily in the given order as save_pretrained does (given
// tensors in state-dict order, the shards match its files). Earlier
// model*.safetensors files and index in `folder` are removed first. Returns
// the files written (names only).
std::vector<std::string> write_safetensors_checkpoint(const std::string& folder,
                                                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                                      std::int64_t max_shard_bytes);

// "F32" for torch::kFloat, ...; throws for types safetensors has no name for.
std::string safetensors_dtype_name(torch::ScalarType dtype);

}  // namespace metareuse
