// Safetensors reading (mmap) and writing. Hand-written: Debian has no C++
// safetensors library, and the format is an 8-byte length, a JSON header and
// raw little-endian data.
#include "metareuse/model/safetensors.h"

#include <fcntl.h>      // open
#include <sys/mman.h>   // mmap, munmap, madvise
#include <sys/stat.h>   // fstat
#include <unistd.h>     // close, sysconf

#include <fmt/format.h>           // messages, shard names
#include <nlohmann/json.hpp>      // the header
#include <torch/torch.h>          // tensor ops for dtype conversion

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "metareuse/core/error.h"
#include "metareuse/core/json_input.h"  // model-folder JSON, depth-bounded
#include "metareuse/core/file_io.h"
#include "metareuse/core/looked_for.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this reader copies bytes as they are");

namespace metareuse {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Largest header the reference implementation accepts (100 MB).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// Largest finite fp16 value.
constexpr double kHalfMax = 65504.0;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  std::size_t bytes;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2}, {"I8", torch::kInt8, 1}, {"U8", torch::kUInt8, 1}, {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& info : kDtypes) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

std::string supported_dtypes() {
  std::vector<std::string> names;
  for (const auto& info : kDtypes) names.emplace_back(info.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

bool is_floating(torch::ScalarType type) {
  return type == torch::kFloat64 || type == torch::kFloat32 || type == torch::kFloat16 || type == torch::kBFloat16;
}

[[noreturn]] void tensor_error(const std::string& file, const std::string& tensor, const std::string& what) {
  throw InputError(fmt::format("safetensors file '{}', tensor '{}': {}", file, tensor, what));
}

}  // namespace

// ---------------------------------------------------------------------------
MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("cannot open '{}': {}", path, why_unreadable(path)));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int saved = errno;
    ::close(fd);
    throw InputError(fmt::format("cannot stat '{}': {}", path, std::strerror(saved)));
  }
  size_ = static_cast<std::size_t>(info.st_size);
  if (size_ > 0) {
    void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      throw InputError(fmt::format("cannot mmap '{}': {}", path, std::strerror(saved)));
    }
    data_ = static_cast<const std::uint8_t*>(address);
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

void MappedFile::release(std::size_t begin, std::size_t end) const {
  if (data_ == nullptr || begin >= end) return;
  // Whole pages only, widened outwards: the mapping is private and never
  // written, so a dropped neighbouring page reads back the same bytes.
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t first = begin / page * page;
  const std::size_t last = std::min(size_, (end + page - 1) / page * page);
  // Advice only: a failure leaves the pages resident, which is still right.
  (void)::madvise(const_cast<std::uint8_t*>(data_) + first, last - first, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

// ---------------------------------------------------------------------------
SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const std::size_t size = file_.size();
  if (size < 8) {
    throw InputError(fmt::format("safetensors file '{}' is truncated: {} bytes, shorter than the 8-byte header length",
                                 path, size));
  }
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, file_.data(), 8);
  if (header_bytes > kMaxHeaderBytes) {
    throw InputError(fmt::format("safetensors file '{}': header length {} is implausible (limit {}); not a safetensors file?",
                                 path, header_bytes, kMaxHeaderBytes));
  }
  if (header_bytes > size - 8) {
    throw InputError(fmt::format("safetensors file '{}' is truncated: the header says {} bytes of JSON but only {} bytes follow",
                                 path, header_bytes, size - 8));
  }
  data_start_ = 8 + header_bytes;
  json header;
  try {
    header = parse_json_input(path, file_.data() + 8, file_.data() + data_start_);
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("safetensors file '{}': the header is not valid JSON: {}", path, e.what()));
  }
  if (!header.is_object()) throw InputError(fmt::format("safetensors file '{}': the header is not a JSON object", path));

  const std::uint64_t data_bytes = size - data_start_;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object()) {
        for (auto meta = it->begin(); meta != it->end(); ++meta) {
          metadata_[meta.key()] = meta->is_string() ? meta->get<std::string>() : meta->dump();
        }
      }
      continue;
    }
    const json& value = it.value();
    SafetensorsEntry entry;
    entry.name = it.key();
    if (!value.is_object() || !value.contains("dtype") || !value["dtype"].is_string() || !value.contains("shape") ||
        !value["shape"].is_array() || !value.contains("data_offsets") || !value["data_offsets"].is_array() ||
        value["data_offsets"].size() != 2) {
      tensor_error(path, entry.name, "header entry must have \"dtype\", \"shape\" and two \"data_offsets\"");
    }
    entry.dtype = value["dtype"].get<std::string>();
    std::uint64_t numel = 1;
    for (const auto& dim : value["shape"]) {
      // A dimension must fit torch's int64 sizes, and the element count must
      // not wrap: a wrapped count could match an empty byte range.
      if (!dim.is_number_unsigned() || dim.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX) ||
          __builtin_mul_overflow(numel, dim.get<std::uint64_t>(), &numel)) {
        tensor_error(path, entry.name, fmt::format("bad shape {}", value["shape"].dump()));
      }
      entry.shape.push_back(dim.get<std::int64_t>());
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      tensor_error(path, entry.name, fmt::format("bad data_offsets {}", offsets.dump()));
    }
    entry.begin = offsets[0].get<std::uint64_t>();
    entry.end = offsets[1].get<std::uint64_t>();
    if (entry.end < entry.begin) tensor_error(path, entry.name, fmt::format("data_offsets {} end before they begin", offsets.dump()));
    // An unknown dtype is reported when the tensor is read, so a file with one
    // exotic tensor can still serve the others.
    if (const DtypeInfo* info = find_dtype(entry.dtype)) {
      std::uint64_t bytes = 0;
      if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(info->bytes), &bytes)) {
        tensor_error(path, entry.name, fmt::format("shape {} of {} is larger than any file", value["shape"].dump(),
                                                   entry.dtype));
      }
      if (entry.end - entry.begin != bytes) {
        tensor_error(path, entry.name,
                     fmt::format("data_offsets {} span {} bytes, but shape {} of {} needs {}", offsets.dump(),
                                 entry.end - entry.begin, value["shape"].dump(), entry.dtype, bytes));
      }
    }
    entries_.emplace(entry.name, std::move(entry));
  }

  // Offsets past the end of the file: either the file was cut short (the
  // entries tile the data section contiguously up to an end the file does
  // not reach) or the header itself points outside the file.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& [name, entry] : entries_) by_offset.push_back(&entry);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsEntry* a, const SafetensorsEntry* b) { return a->begin < b->begin; });
  bool contiguous = true;
  std::uint64_t expected = 0;
  for (const auto* entry : by_offset) {
    if (entry->begin != expected) contiguous = false;
    expected = entry->end;
  }
  for (const auto* entry : by_offset) {
    if (entry->end <= data_bytes) continue;
    if (contiguous) {
      tensor_error(path, entry->name,
                   fmt::format("the file is truncated: its header describes {} bytes of tensor data but only {} are "
                               "present, so this tensor's data_offsets [{}, {}] are cut off",
                               expected, data_bytes, entry->begin, entry->end));
    }
    tensor_error(path, entry->name,
                 fmt::format("data_offsets [{}, {}] point past the end of the file (its data section is {} bytes)",
                             entry->begin, entry->end, data_bytes));
  }
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) tensor_error(path(), name, "no such tensor in this file");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name, std::optional<torch::ScalarType> dtype) const {
  const SafetensorsEntry& info = entry(name);
  const DtypeInfo* source = find_dtype(info.dtype);
  if (source == nullptr) {
    tensor_error(path(), name, fmt::format("dtype {} is not supported (supported: {})", info.dtype, supported_dtypes()));
  }
  // Copied out of the map: the data section need not be aligned for the type,
  // and the tensor must outlive the mapping.
  torch::Tensor raw = torch::empty(info.shape, torch::TensorOptions().dtype(source->type));
  if (info.end > info.begin) {
    std::memcpy(raw.data_ptr(), file_.data() + data_start_ + info.begin, info.end - info.begin);
    file_.release(data_start_ + info.begin, data_start_ + info.end);
  }
  if (!dtype || *dtype == source->type) return raw;

  if (!is_floating(source->type) || !is_floating(*dtype)) {
    tensor_error(path(), name,
                 fmt::format("cannot convert {} to {} (only floating types convert)", info.dtype,
                             c10::toString(*dtype)));
  }
  if (*dtype == torch::kFloat16 && source->type != torch::kFloat16) {
    // Values beyond fp16's range would become infinities; report them.
    torch::Tensor wide = raw.to(torch::kFloat64);
    torch::Tensor out_of_range = torch::isfinite(wide).logical_and(wide.abs() > kHalfMax);
    const std::int64_t count = out_of_range.sum().item<std::int64_t>();
    if (count > 0) {
      const double largest = wide.masked_select(out_of_range).abs().max().item<double>();
      tensor_error(path(), name,
                   fmt::format("{} of {} values lie outside the fp16 range (|x| > 65504, largest {}); converting {} "
                               "to F16 would turn them into infinities",
                               count, raw.numel(), largest, info.dtype));
    }
  }
  return raw.to(*dtype);
}

// ---------------------------------------------------------------------------
SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& path) {
  fs::path location(path);
  fs::path index;
  fs::path single;
  if (fs::is_directory(location)) {
    if (fs::exists(location / "model.safetensors.index.json")) {
      index = location / "model.safetensors.index.json";
    } else if (fs::exists(location / "model.safetensors")) {
      single = location / "model.safetensors";
    } else {
      throw InputError(fmt::format("'{}' holds neither model.safetensors nor model.safetensors.index.json ({})", path,
                                   not_found_among("weights", {(location / "model.safetensors.index.json").string(),
                                                               (location / "model.safetensors").string()})));
    }
  } else if (location.extension() == ".json") {
    index = location;
  } else {
    single = location;
  }

  if (!single.empty()) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& name : files_[0]->names()) file_of_[name] = 0;
    description_ = single.string();
    return;
  }

  std::ifstream in(index);
  if (!in) throw InputError(fmt::format("cannot open safetensors index '{}': {}", index.string(), why_unreadable(index.string())));
  json tree;
  try {
    tree = parse_json_input(index.string(), in);
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("safetensors index '{}' is not valid JSON: {}", index.string(), e.what()));
  }
  if (!tree.contains("weight_map") || !tree["weight_map"].is_object()) {
    throw InputError(fmt::format("safetensors index '{}' has no \"weight_map\" object", index.string()));
  }
  std::map<std::string, std::size_t> file_index;
  for (auto it = tree["weight_map"].begin(); it != tree["weight_map"].end(); ++it) {
    if (!it->is_string()) {
      throw InputError(fmt::format("safetensors index '{}': weight_map entry '{}' is not a file name", index.string(), it.key()));
    }
    const std::string shard = it->get<std::string>();
    auto found = file_index.find(shard);
    if (found == file_index.end()) {
      // A shard is a file of the model's folder: a downloaded index may not
      // send the reader elsewhere (an absolute path, or one through "..").
      const fs::path relative = fs::path(shard).lexically_normal();
      if (shard.empty() || relative.is_absolute() || relative.empty() || *relative.begin() == "..") {
        throw InputError(fmt::format("safetensors index '{}': tensor '{}' is mapped to '{}', which is not a file in "
                                     "the index's folder",
                                     index.string(), it.key(), shard));
      }
      fs::path shard_path = index.parent_path() / shard;
      if (!fs::exists(shard_path)) {
        throw InputError(fmt::format("safetensors index '{}': tensor '{}' is mapped to '{}', which does not exist "
                                     "(looked for {})",
                                     index.string(), it.key(), shard_path.string(), absolute_text(shard_path.string())));
      }
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
      found = file_index.emplace(shard, files_.size() - 1).first;
    }
    if (!files_[found->second]->contains(it.key())) {
      throw InputError(fmt::format("safetensors index '{}' maps tensor '{}' to '{}', but that file does not hold it",
                                   index.string(), it.key(), files_[found->second]->path()));
    }
    file_of_[it.key()] = found->second;
  }
  for (const auto& file : files_) {
    for (const auto& name : file->names()) {
      if (!file_of_.count(name)) {
        throw InputError(fmt::format("safetensors file '{}' holds tensor '{}', which the index '{}' does not list",
                                     file->path(), name, index.string()));
      }
    }
  }
  description_ = fmt::format("{} ({} shards)", index.string(), files_.size());
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : file_of_) out.push_back(name);
  return out;
}

const std::string& SafetensorsCheckpoint::file_of(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) {
    throw InputError(fmt::format("checkpoint '{}' has no tensor '{}'", description_, name));
  }
  return files_[it->second]->path();
}

const SafetensorsEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw InputError(fmt::format("checkpoint '{}' has no tensor '{}'", description_, name));
  return files_[it->second]->entry(name);
}

torch::Tensor SafetensorsCheckpoint::tensor(const std::string& name, std::optional<torch::ScalarType> dtype) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw InputError(fmt::format("checkpoint '{}' has no tensor '{}'", description_, name));
  return files_[it->second]->tensor(name, dtype);
}

std::string SafetensorsCheckpoint::description() const { return description_; }

// ---------------------------------------------------------------------------
std::string safetensors_dtype_name(torch::ScalarType dtype) {
  for (const auto& info : kDtypes) {
    if (info.type == dtype) return info.name;
  }
  throw Error(fmt::format("safetensors has no dtype for {}", c10::toString(dtype)));
}

namespace {

// The reference writer's order: dtypes by descending rank in its Dtype enum
// (U64, I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL), then names.
int dtype_rank(const std::string& name) {
  static const char* order[] = {"BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64"};
  for (int i = 0; i < 10; ++i) {
    if (name == order[i]) return i;
  }
  return -1;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Insertion-ordered JSON, laid out as the reference writer lays it out, so a
  // checkpoint we save is byte-identical to transformers' save_pretrained.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [key, value] : metadata) meta[key] = value;
  header["__metadata__"] = meta;

  std::vector<std::pair<std::string, torch::Tensor>> sorted;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw Error(fmt::format("writing '{}': the tensor name '__metadata__' is reserved", path));
    if (!seen.insert(name).second) throw Error(fmt::format("writing '{}': tensor '{}' given twice", path, name));
    sorted.emplace_back(name, tensor.detach().to(torch::kCPU).contiguous());
  }
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    const int rank_a = dtype_rank(safetensors_dtype_name(a.second.scalar_type()));
    const int rank_b = dtype_rank(safetensors_dtype_name(b.second.scalar_type()));
    return rank_a != rank_b ? rank_a > rank_b : a.first < b.first;
  });
  std::vector<torch::Tensor> contiguous;
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const auto& [name, data] = sorted[i];
    const std::uint64_t bytes = static_cast<std::uint64_t>(data.numel()) * data.element_size();
    nlohmann::ordered_json entry;
    entry["dtype"] = safetensors_dtype_name(data.scalar_type());
    entry["shape"] = data.sizes().vec();
    entry["data_offsets"] = {offset, offset + bytes};
    header[name] = entry;
    offset += bytes;
    contiguous.push_back(data);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the reference writer aligns the data section to 8 bytes

  // Written beside the target and renamed, every write checked (core/file_io.h),
  // so a reader never sees half a file and a failed write keeps the old one.
  AtomicFile out(path, ".partial");
  const std::uint64_t header_bytes = text.size();
  out.write(std::string_view(reinterpret_cast<const char*>(&header_bytes), 8));
  out.write(text);
  for (const auto& data : contiguous) {
    out.write(std::string_view(static_cast<const char*>(data.data_ptr()),
                               static_cast<std::size_t>(data.numel() * data.element_size())));
  }
  out.commit();
}

std::vector<std::string> write_safetensors_checkpoint(const std::string& folder,
                                                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                                      std::int64_t max_shard_bytes) {
  prepare_output_file((fs::path(folder) / "model.safetensors").string());  // "cannot create ...: reason"
  // Greedy split in the given order, as save_pretrained does.
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  std::int64_t shard_bytes = 0;
  std::int64_t total_bytes = 0;
  for (const auto& item : tensors) {
    const std::int64_t bytes = item.second.numel() * item.second.element_size();
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(item);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  // A stale index or shards from an earlier save would shadow or mix with this one.
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name == "model.safetensors" || name == "model.safetensors.index.json" ||
        (name.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors")) {
      fs::remove(entry.path());
    }
  }
  if (shards.size() == 1) {
    write_safetensors((fs::path(folder) / "model.safetensors").string(), shards[0]);
    return {"model.safetensors"};
  }
  std::vector<std::string> written;
  json weight_map = json::object();
  std::int64_t total_parameters = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    write_safetensors((fs::path(folder) / name).string(), shards[i]);
    for (const auto& [tensor_name, tensor] : shards[i]) {
      weight_map[tensor_name] = name;
      total_parameters += tensor.numel();
    }
    written.push_back(name);
  }
  json index = {{"metadata", {{"total_size", total_bytes}, {"total_parameters", total_parameters}}},
                {"weight_map", weight_map}};
  write_file_atomic((fs::path(folder) / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  written.push_back("model.safetensors.index.json");
  return written;
}

}  // namespace metareuse
