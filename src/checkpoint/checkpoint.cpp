#include "metareuse/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "h5.h"
#include "metareuse/checkpoint/names.h"  // kLatestPointer
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/timing.h"

namespace metareuse {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The group of the master weights; the optimizer's state groups follow it
// under the names the optimizer gives them (ShardState::name).
constexpr const char* kParamsGroup = "params";
constexpr const char* kRngGroup = "rng";

// Every shard-shaped state a checkpoint holds, one HDF5 group each: the
// master weights first, then the optimizer's. Each names one tensor per unit.
std::vector<ShardState> state_groups(ShardedModel& model, const std::vector<ShardState>& optimizer) {
  ShardState params{kParamsGroup, {}};
  for (std::size_t u = 0; u < model.size(); ++u) params.per_unit.push_back(model.unit(u).master());
  std::vector<ShardState> groups{std::move(params)};
  for (const ShardState& state : optimizer) {
    MR_CHECK(state.per_unit.size() == model.size(), "optimizer state '{}' has {} units, the model {}", state.name,
             state.per_unit.size(), model.size());
    MR_CHECK(state.name != kParamsGroup && state.name != kRngGroup, "optimizer state may not be named '{}'",
             state.name);
    groups.push_back(state);
  }
  return groups;
}

// The names of the links in an HDF5 group (or the file's root), in name order.
std::vector<std::string> member_names(hid_t group) {
  H5G_info_t info{};
  MR_CHECK_H5(H5Gget_info(group, &info));
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t length = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<std::size_t>(std::max<ssize_t>(length, 0)), '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(std::move(name));
  }
  return names;
}

void write_string_attribute(hid_t location, const char* name, const std::string& value) {
  H5Handle type = MR_H5_ID(H5Tcopy(H5T_C_S1));
  MR_CHECK_H5(H5Tset_size(type, std::max<std::size_t>(1, value.size())));
  H5Handle space = MR_H5_ID(H5Screate(H5S_SCALAR));
  H5Handle attribute = MR_H5_ID(H5Acreate2(location, name, type, space, H5P_DEFAULT, H5P_DEFAULT));
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  MR_CHECK_H5(H5Awrite(attribute, type, padded.data()));
}

std::string read_string_attribute(hid_t location, const char* name, const std::string& file) {
  if (H5Aexists(location, name) <= 0) throw InputError(fmt::format("{}: attribute '{}' is missing", file, name));
  H5Handle attribute = MR_H5_ID(H5Aopen(location, name, H5P_DEFAULT));
  H5Handle type = MR_H5_ID(H5Aget_type(attribute));
  if (H5Tget_class(type) != H5T_STRING) throw InputError(fmt::format("{}: attribute '{}' is not a string", file, name));
  std::size_t size = H5Tget_size(type);
  std::string value(size, '\0');
  H5Handle memory_type = MR_H5_ID(H5Tcopy(H5T_C_S1));
  MR_CHECK_H5(H5Tset_size(memory_type, size));
  MR_CHECK_H5(H5Aread(attribute, memory_type, value.data()));
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

void write_int_attribute(hid_t location, const char* name, int64_t value) {
  H5Handle space = MR_H5_ID(H5Screate(H5S_SCALAR));
  H5Handle attribute = MR_H5_ID(H5Acreate2(location, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT));
  MR_CHECK_H5(H5Awrite(attribute, H5T_NATIVE_INT64, &value));
}

int64_t read_int_attribute(hid_t location, const char* name, const std::string& file) {
  if (H5Aexists(location, name) <= 0) throw InputError(fmt::format("{}: attribute '{}' is missing", file, name));
  H5Handle attribute = MR_H5_ID(H5Aopen(location, name, H5P_DEFAULT));
  int64_t value = 0;
  MR_CHECK_H5(H5Aread(attribute, H5T_NATIVE_INT64, &value));
  return value;
}

// A chunked dataset (chunks of about 1 MiB along the first dimension),
// optionally gzip-compressed.
void write_tensor(hid_t group, const std::string& name, const torch::Tensor& tensor, hid_t file_type, hid_t memory_type,
                  int compression) {
  torch::Tensor data = tensor.to(torch::kCPU).contiguous();  // shards may live on a GPU
  std::vector<hsize_t> dims(data.sizes().begin(), data.sizes().end());
  if (dims.empty()) dims.push_back(1);
  H5Handle space = MR_H5_ID(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  H5Handle properties = MR_H5_ID(H5Pcreate(H5P_DATASET_CREATE));
  std::vector<hsize_t> chunk = dims;
  hsize_t row_elements = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) row_elements *= dims[i];
  hsize_t rows = std::max<hsize_t>(1, (1 << 18) / std::max<hsize_t>(1, row_elements));
  chunk[0] = std::max<hsize_t>(1, std::min(dims[0], rows));
  if (data.numel() > 0) {
    MR_CHECK_H5(H5Pset_chunk(properties, static_cast<int>(chunk.size()), chunk.data()));
    if (compression > 0) MR_CHECK_H5(H5Pset_deflate(properties, static_cast<unsigned>(compression)));
    // A Fletcher32 checksum per chunk, verified by HDF5 on every read: flipped
    // bytes fail the load naming the tensor instead of changing the weights.
    MR_CHECK_H5(H5Pset_fletcher32(properties));
  }
  H5Handle dataset =
      MR_H5_ID(H5Dcreate2(group, name.c_str(), file_type, space, H5P_DEFAULT, properties, H5P_DEFAULT));
  if (data.numel() > 0) MR_CHECK_H5(H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data_ptr()));
}

torch::Tensor read_tensor(hid_t file, const std::string& path, const std::vector<int64_t>& expected_shape,
                          torch::ScalarType dtype, hid_t memory_type, const std::string& file_name) {
  if (H5Lexists(file, path.c_str(), H5P_DEFAULT) <= 0) {
    throw InputError(fmt::format("{}: dataset '{}' is missing", file_name, path));
  }
  H5Handle dataset = MR_H5_ID(H5Dopen2(file, path.c_str(), H5P_DEFAULT));
  H5Handle space = MR_H5_ID(H5Dget_space(dataset));
  int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  if (!expected_shape.empty() && shape != expected_shape) {
    throw InputError(fmt::format("{}: dataset '{}' has shape {}, the model expects {}", file_name, path,
                                 c10::str(c10::IntArrayRef(shape)), c10::str(c10::IntArrayRef(expected_shape))));
  }
  torch::Tensor out = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (out.numel() > 0) {
    herr_t status = H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr());
    if (status < 0) {
      if (h5_checksum_failed()) {
        throw InputError(fmt::format("{}: tensor '{}' fails its Fletcher32 checksum: the stored data is corrupted",
                                     file_name, path));
      }
      throw InputError(fmt::format("{}: cannot read dataset '{}' (truncated or corrupt file?)", file_name, path));
    }
  }
  return out;
}

H5Handle open_checkpoint_file(const std::string& path) {
  h5_quiet_errors();
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(fmt::format("checkpoint '{}' does not exist{}", path, looked_for(path)));
  if (fs::is_directory(path, ec)) {
    throw InputError(fmt::format("checkpoint '{}' is a directory; pass a checkpoint file, or the folder through "
                                 "--resume auto with checkpoint.dir",
                                 path));
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(fmt::format("checkpoint '{}' is not an HDF5 file (corrupt or truncated)", path));
  }
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(fmt::format("checkpoint '{}' cannot be opened (truncated or corrupt HDF5 file)", path));
  }
  return H5Handle(file);
}

int64_t step_of(const fs::path& file) {
  static const std::regex pattern(R"(ckpt-(\d+)\.h5)");
  std::smatch match;
  std::string name = file.filename().string();
  return std::regex_match(name, match, pattern) ? std::stoll(match[1]) : -1;
}

// Drops the oldest complete checkpoints beyond keep_last / max_total_bytes;
// never the one `latest` names.
void apply_retention(const CheckpointOptions& options, const std::string& newest) {
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& entry : fs::directory_iterator(options.dir)) {
    int64_t step = step_of(entry.path());
    if (step >= 0 && entry.is_regular_file()) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end());
  auto total_bytes = [&]() {
    std::uintmax_t total = 0;
    for (const auto& [step, path] : found) total += fs::file_size(path);
    return total;
  };
  while (found.size() > 1) {
    bool too_many = options.keep_last > 0 && static_cast<int64_t>(found.size()) > options.keep_last;
    bool too_big = options.max_total_bytes > 0 && total_bytes() > static_cast<std::uintmax_t>(options.max_total_bytes);
    if (!too_many && !too_big) break;
    if (found.front().second.filename() == fs::path(newest).filename()) break;
    log_info("checkpoint retention: removing {}", found.front().second.string());
    fs::remove(found.front().second);
    found.erase(found.begin());
  }
}

}  // namespace

SaveResult save_checkpoint(ShardedModel& model, const std::vector<ShardState>& optimizer, const json& meta,
                           const std::vector<uint8_t>& rng_state, const CheckpointOptions& options) {
  Stopwatch watch;
  Communicator& comm = model.comm();
  const bool writer = comm.rank() == 0;
  const int64_t step = meta.value("step", int64_t{0});
  const std::string final_path = (fs::path(options.dir) / fmt::format("ckpt-{:08d}.h5", step)).string();
  const std::string tmp_path = final_path + ".tmp";
  std::string failure;
  H5Handle file;
  const std::vector<ShardState> states = state_groups(model, optimizer);
  std::vector<H5Handle> groups;  // one per state, then the RNG states

  // Every rank takes part in every gather even after rank 0 failed to write,
  // so a full disk never leaves a rank waiting.
  auto attempt = [&](const std::function<void()>& work) {
    if (!writer || !failure.empty()) return;
    try {
      work();
    } catch (const std::exception& e) {
      failure = fmt::format("cannot write {}: {}", tmp_path, e.what());  // the file, then HDF5's or the system's reason
    }
  };
  // One step of rank 0's file work. The other ranks wait for it in
  // wait_for_rank, outside the collective watchdog, so no watched collective
  // spans a write: each gather starts with every rank present, and a slow
  // filesystem (tens of GB, then fsync) cannot end the job through
  // dist.collective_timeout.
  auto writer_step = [&](const char* what, const std::function<void()>& work) {
    attempt([&]() {
      if (options.test_write_delay_seconds > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(options.test_write_delay_seconds));
      }
      work();
    });
    comm.wait_for_rank(0, kCheckpointWriterWaitSeconds, what);
  };

  writer_step("rank 0 creating the checkpoint file", [&]() {
    h5_quiet_errors();
    prepare_output_file(tmp_path);  // "cannot create <file>: reason" for a missing, read-only or file-named folder
    file = MR_H5_ID(H5Fcreate(tmp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    write_string_attribute(file, "magic", kCheckpointMagic);
    write_int_attribute(file, "format_version", kCheckpointFormatVersion);
    json full_meta = meta;
    full_meta["world_size"] = comm.size();
    write_string_attribute(file, "meta", full_meta.dump());
    for (const ShardState& state : states) {
      groups.push_back(MR_H5_ID(H5Gcreate2(file, state.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
    }
    groups.push_back(MR_H5_ID(H5Gcreate2(file, kRngGroup, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  });

  for (std::size_t u = 0; u < model.size(); ++u) {
    ShardedUnit& unit = model.unit(u);
    for (std::size_t g = 0; g < states.size(); ++g) {
      torch::Tensor full = unit.gather_shard(states[g].per_unit[u]);  // (padded_numel,)
      writer_step("rank 0 writing a unit to the checkpoint", [&]() {
        for (const auto& [name, view] : unit.views(full)) {
          write_tensor(groups[g], name, view, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, options.compression);
        }
      });
    }
  }

  // Every rank's generator state, gathered to rank 0.
  std::vector<uint8_t> all_states = comm.allgatherv(rng_state);
  auto lengths = comm.allgather_value<std::uint64_t>(rng_state.size());
  writer_step("rank 0 completing the checkpoint file (flush, fsync, rename)", [&]() {
    std::size_t offset = 0;
    for (std::size_t r = 0; r < lengths.size(); ++r) {
      auto state = torch::from_blob(all_states.data() + offset, {static_cast<int64_t>(lengths[r])}, torch::kUInt8);
      write_tensor(groups.back(), fmt::format("rank_{}", r), state, H5T_STD_U8LE, H5T_NATIVE_UINT8, 0);
      offset += lengths[r];
    }
    groups.clear();
    MR_CHECK_H5(H5Fflush(file, H5F_SCOPE_GLOBAL));
    if (H5Fclose(file.release()) < 0) {
      MR_THROW("cannot write {}: HDF5 could not complete the file (disk full or a file-size limit?)", tmp_path);
    }
    commit_temporary(tmp_path, final_path);
    write_file_atomic((fs::path(options.dir) / kLatestPointer).string(), fs::path(final_path).filename().string() + "\n");
  });
  if (writer && !failure.empty()) {
    groups.clear();
    file.reset();
    std::error_code ignored;
    fs::remove(tmp_path, ignored);
  }

  // Every rank has waited for the writer, so this agreement is quick.
  SaveResult result;
  result.message = comm.broadcast_string(failure, 0);
  result.ok = result.message.empty();
  if (result.ok) {
    result.path = final_path;
    // Retention removes files on rank 0: more filesystem work to wait for.
    if (writer) apply_retention(options, final_path);
  }
  comm.wait_for_rank(0, kCheckpointWriterWaitSeconds, "rank 0 removing old checkpoints");
  result.seconds = watch.seconds();
  return result;
}

std::string resolve_checkpoint(const std::string& spec, const std::string& dir) {
  std::error_code ec;
  auto from_latest = [](const std::string& folder, bool required) -> std::string {
    fs::path pointer = fs::path(folder) / kLatestPointer;
    if (!fs::exists(pointer)) {
      if (required) throw InputError(fmt::format("checkpoint folder '{}' has no '{}' pointer (looked for {})", folder,
                                                   kLatestPointer, absolute_text(pointer.string())));
      return "";
    }
    std::ifstream in(pointer);
    std::string name;
    std::getline(in, name);
    if (name.empty()) throw InputError(fmt::format("'{}' is empty", pointer.string()));
    fs::path target = fs::path(folder) / name;
    if (!fs::exists(target)) {
      throw InputError(fmt::format("'{}' names '{}', which does not exist (looked for {})", pointer.string(),
                                    target.string(), absolute_text(target.string())));
    }
    return target.string();
  };
  if (spec == "auto") return fs::is_directory(dir, ec) ? from_latest(dir, false) : std::string();
  if (fs::is_directory(spec, ec)) return from_latest(spec, true);
  return spec;
}

json read_checkpoint_meta(const std::string& path) {
  H5Handle file = open_checkpoint_file(path);
  std::string magic = read_string_attribute(file, "magic", path);
  if (magic != kCheckpointMagic) {
    throw InputError(fmt::format("{}: not a metareuse checkpoint (magic '{}', expected '{}')", path, magic,
                                 kCheckpointMagic));
  }
  int64_t version = read_int_attribute(file, "format_version", path);
  if (version != kCheckpointFormatVersion) {
    throw InputError(fmt::format("{}: checkpoint format version {}, this build reads version {}; use the metareuse "
                                 "release that wrote it, or export it to safetensors there",
                                 path, version, kCheckpointFormatVersion));
  }
  json meta = json::parse(read_string_attribute(file, "meta", path), nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) throw InputError(fmt::format("{}: attribute 'meta' is not JSON", path));
  return meta;
}

json load_checkpoint(const std::string& path, ShardedModel& model, const std::vector<ShardState>& optimizer,
                     std::vector<uint8_t>* rng_state) {
  json meta = read_checkpoint_meta(path);
  H5Handle file = open_checkpoint_file(path);
  const std::vector<ShardState> states = state_groups(model, optimizer);
  for (std::size_t u = 0; u < model.size(); ++u) {
    ShardedUnit& unit = model.unit(u);
    for (const ShardState& state : states) {
      std::map<std::string, torch::Tensor> full;
      for (const auto& spec : unit.layout().parameters) {
        full[spec.name] = read_tensor(file, state.name + "/" + spec.name, spec.shape, torch::kFloat32,
                                      H5T_NATIVE_FLOAT, path);
      }
      torch::Tensor shard = state.per_unit[u];  // a handle: fills the owner's tensor
      unit.load_full_into(full, shard);
    }
  }
  if (rng_state != nullptr) {
    rng_state->clear();
    if (meta.value("world_size", 0) == model.comm().size()) {
      torch::Tensor state = read_tensor(file, fmt::format("{}/rank_{}", kRngGroup, model.comm().rank()), {}, torch::kUInt8,
                                        H5T_NATIVE_UINT8, path);
      rng_state->assign(state.data_ptr<uint8_t>(), state.data_ptr<uint8_t>() + state.numel());
    }
  }
  return meta;
}

std::map<std::string, torch::Tensor> read_checkpoint_params(const std::string& path) {
  read_checkpoint_meta(path);
  H5Handle file = open_checkpoint_file(path);
  std::map<std::string, torch::Tensor> out;
  H5Handle group = MR_H5_ID(H5Gopen2(file, kParamsGroup, H5P_DEFAULT));
  for (const std::string& name : member_names(group)) {
    out[name] = read_tensor(file, std::string(kParamsGroup) + "/" + name, {}, torch::kFloat32, H5T_NATIVE_FLOAT, path);
  }
  return out;
}

CheckpointVerification verify_checkpoint(const std::string& path) {
  read_checkpoint_meta(path);
  H5Handle file = open_checkpoint_file(path);
  CheckpointVerification result;
  for (const char* required : {kParamsGroup, kRngGroup}) {
    if (H5Lexists(file, required, H5P_DEFAULT) <= 0) {
      throw InputError(fmt::format("{}: group '{}' is missing", path, required));
    }
  }
  // Every group: the master weights, the optimizer's state (whatever names it
  // saved them under) and the RNG states.
  for (const std::string& group_name : member_names(file)) {
    H5Handle group = MR_H5_ID(H5Gopen2(file, group_name.c_str(), H5P_DEFAULT));
    for (const std::string& name : member_names(group)) {
      const std::string tensor = group_name + "/" + name;
      {
        H5Handle dataset = MR_H5_ID(H5Dopen2(file, tensor.c_str(), H5P_DEFAULT));
        H5Handle creation = MR_H5_ID(H5Dget_create_plist(dataset));
        H5Handle space = MR_H5_ID(H5Dget_space(dataset));
        unsigned flags = 0;
        std::size_t values = 0;
        // An empty tensor (no RNG state saved) has no bytes to checksum.
        if (H5Sget_simple_extent_npoints(space) == 0 ||
            H5Pget_filter_by_id2(creation, H5Z_FILTER_FLETCHER32, &flags, &values, nullptr, 0, nullptr, nullptr) >= 0) {
          ++result.checksummed;
        }
        H5Eclear2(H5E_DEFAULT);
      }
      const bool bytes = group_name == kRngGroup;
      read_tensor(file, tensor, {}, bytes ? torch::kUInt8 : torch::kFloat32, bytes ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                  path);
      ++result.tensors;
    }
  }
  return result;
}

}  // namespace metareuse
