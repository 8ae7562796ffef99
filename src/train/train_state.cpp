#include "metareuse/train/train_state.h"

#include <fmt/format.h>

#include <filesystem>

#include "metareuse/core/error.h"

namespace metareuse {
using json = nlohmann::json;

namespace {

json sampler_json(const SamplerState& state) {
  return {{"seed", state.seed}, {"epoch", state.epoch}, {"position", state.position}, {"samples", state.samples},
          {"ranks", state.ranks}};
}

// meta[key] as T, or InputError naming the file and the key.
template <typename T>
T field(const json& object, const char* key, const std::string& source, const std::string& prefix = "") {
  if (!object.is_object() || !object.contains(key)) {
    throw InputError(fmt::format("{}: checkpoint metadata has no '{}{}'", source, prefix, key));
  }
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    throw InputError(fmt::format("{}: checkpoint metadata '{}{}' has the wrong type ({})", source, prefix, key,
                                 object.at(key).dump()));
  }
}

}  // namespace

json TrainIdentity::to_json() const {
  return {{"model", model},
          {"tokenizer", tokenizer},
          {"dataset",
           {{"sequences", sequences},
            {"sequence_length", sequence_length},
            {"patterns_hash", patterns_hash},
            {"tokenizer", tokenizer}}}};
}

json TrainState::to_json() const {
  json meta = identity.to_json();
  meta["step"] = step;
  meta["adam_steps"] = adam_steps;
  meta["epoch"] = epoch;
  meta["sampler"] = sampler_json(sampler);
  meta["loss_scale"] = loss_scale;
  meta["loss_scale_good_steps"] = loss_scale_good_steps;
  meta["loss_scale_hysteresis_left"] = loss_scale_hysteresis_left;
  meta["config"] = config;
  if (!text.is_null()) meta["text"] = text;
  if (world_size > 0) meta["world_size"] = world_size;
  return meta;
}

TrainState TrainState::from_json(const json& meta, const std::string& source) {
  TrainState state;
  state.identity.model = field<json>(meta, "model", source);
  state.identity.tokenizer = field<std::string>(meta, "tokenizer", source);
  const json dataset = field<json>(meta, "dataset", source);
  state.identity.sequences = field<std::int64_t>(dataset, "sequences", source, "dataset.");
  state.identity.sequence_length = field<std::int64_t>(dataset, "sequence_length", source, "dataset.");
  state.identity.patterns_hash = field<std::string>(dataset, "patterns_hash", source, "dataset.");
  state.step = field<std::int64_t>(meta, "step", source);
  state.adam_steps = field<std::int64_t>(meta, "adam_steps", source);
  state.epoch = field<std::int64_t>(meta, "epoch", source);
  const json sampler = field<json>(meta, "sampler", source);
  state.sampler.seed = field<std::uint64_t>(sampler, "seed", source, "sampler.");
  state.sampler.epoch = field<std::int64_t>(sampler, "epoch", source, "sampler.");
  state.sampler.position = field<std::int64_t>(sampler, "position", source, "sampler.");
  state.sampler.samples = field<std::int64_t>(sampler, "samples", source, "sampler.");
  state.sampler.ranks = field<std::int64_t>(sampler, "ranks", source, "sampler.");
  state.loss_scale = field<double>(meta, "loss_scale", source);
  state.loss_scale_good_steps = field<std::int64_t>(meta, "loss_scale_good_steps", source);
  state.loss_scale_hysteresis_left = field<std::int64_t>(meta, "loss_scale_hysteresis_left", source);
  state.config = meta.value("config", json::object());
  if (meta.contains("text")) state.text = meta.at("text");
  state.world_size = meta.value("world_size", std::int64_t{0});
  return state;
}

namespace {

// What to do about a checkpoint made for another model, tokenizer or dataset
// (a tokenizer retrained on a grown corpus, say): it cannot be resumed, so
// either training starts afresh elsewhere or the old inputs come back.
std::string resume_way_out(const std::string& checkpoint) {
  const std::string folder = std::filesystem::path(checkpoint).parent_path().string();
  return fmt::format("; to train afresh, give this run another checkpoint.dir (or run.out_dir), or remove {}; to "
                     "go on from this checkpoint, restore the model, tokenizer and dataset it was made with",
                     folder.empty() ? std::string(".") : folder);
}

}  // namespace

void check_resume_identity(const json& saved, const TrainIdentity& identity, const std::string& path) {
  const json current = identity.to_json();
  for (const char* part : {"model", "tokenizer", "dataset"}) {
    if (!saved.contains(part)) throw InputError(fmt::format("{}: checkpoint has no '{}' identity", path, part));
    const json& a = saved.at(part);
    const json& b = current.at(part);
    if (a == b) continue;
    if (a.is_object() && b.is_object()) {
      for (auto it = b.begin(); it != b.end(); ++it) {
        if (!a.contains(it.key()) || a.at(it.key()) != it.value()) {
          throw InputError(fmt::format("{}: cannot resume: {}.{} is {} in the checkpoint but {} in this run{}", path,
                                       part, it.key(), a.contains(it.key()) ? a.at(it.key()).dump() : "absent",
                                       it.value().dump(), resume_way_out(path)));
        }
      }
    }
    throw InputError(fmt::format("{}: cannot resume: {} is {} in the checkpoint but {} in this run{}", path, part,
                                 a.dump(), b.dump(), resume_way_out(path)));
  }
}

}  // namespace metareuse
