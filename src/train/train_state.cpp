#include "metareuse/train/train_state.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join

#include <algorithm>

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
  if (best_validation_loss) {
    meta["validation"] = {{"best_loss", *best_validation_loss},
                          {"evaluations_without_improvement", evaluations_without_improvement}};
  }
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
  if (meta.contains("validation")) {
    const json validation = meta.at("validation");
    state.best_validation_loss = field<double>(validation, "best_loss", source, "validation.");
    state.evaluations_without_improvement =
        field<std::int64_t>(validation, "evaluations_without_improvement", source, "validation.");
  }
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

const std::vector<std::string>& resume_may_change() {
  // How long training goes on (its length, and so where the schedule ends, is
  // the user's to extend; early stopping ends it sooner), its time budget, where it runs and in what pieces
  // (the same global batch makes the same steps), and what it reports. The lr,
  // the schedule's shape, the optimizer, the batch and the precision are the
  // training itself.
  static const std::vector<std::string> keys = {
      "train.max_steps",           "train.epochs",        "train.policy_small_examples",
      "train.policy_small_epochs", "train.policy_small_max_steps", "train.policy_epochs",
      "train.time_limit",          "train.device",        "train.device_memory",
      "train.micro_batch",         "train.recompute",     "train.loss_chunk_rows",
      "train.overlap",
      "train.max_bad_steps",       "train.log_every",     "train.progress",
      "train.eval_every",          "train.early_stop_patience", "train.early_stop_min_delta"};
  return keys;
}

std::vector<std::string> check_resume_options(const json& saved_config, const json& current_config,
                                              const std::string& path) {
  std::vector<std::string> changed;
  std::vector<std::string> refused;       // "train.lr is 0.003 in the checkpoint but 0.001 in this run"
  std::vector<std::string> refused_keys;  // "train.lr"
  const std::vector<std::string>& may_change = resume_may_change();
  // The training options: the train section, and run.seed (the weights' initialisation and the data order).
  auto compare = [&](const std::string& key, const json& saved, const json& current) {
    if (saved.is_null() || current.is_null() || saved == current) return;  // a key one side lacks
    if (key == "train.resume") return;  // how this run starts, not what it trains
    if (std::find(may_change.begin(), may_change.end(), key) != may_change.end()) {
      changed.push_back(fmt::format("{} changed {} -> {}", key, saved.dump(), current.dump()));
    } else {
      refused.push_back(fmt::format("{} is {} in the checkpoint but {} in this run", key, saved.dump(), current.dump()));
      refused_keys.push_back(key);
    }
  };
  auto section = [](const json& config, const char* name) {
    return config.is_object() && config.contains(name) && config.at(name).is_object() ? config.at(name)
                                                                                      : json::object();
  };
  const json saved_train = section(saved_config, "train");
  const json current_train = section(current_config, "train");
  for (auto it = current_train.begin(); it != current_train.end(); ++it) {
    compare("train." + it.key(), saved_train.value(it.key(), json()), it.value());
  }
  compare("run.seed", section(saved_config, "run").value("seed", json()),
          section(current_config, "run").value("seed", json()));
  if (!refused.empty()) {
    throw ConfigError(fmt::format(
        "{}: cannot resume: the checkpoint was trained with other training options: {}. To continue its training, "
        "set {} back to the checkpoint's value; to train with the new one, start a new training in another run "
        "folder (--set run.name=NAME, or a new run.out_dir or checkpoint.dir where the config sets them). A resume "
        "may change only {}",
        path, fmt::join(refused, "; "), fmt::join(refused_keys, ", "), fmt::join(may_change, ", ")));
  }
  return changed;
}

}  // namespace metareuse
