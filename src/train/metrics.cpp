#include "metareuse/train/metrics.h"

#include "metareuse/core/json_lines.h"

namespace metareuse {
using json = nlohmann::json;

namespace {

// "traffic": {"sent_bytes", "received_bytes", and per kind {"calls", "sent_bytes", "received_bytes"}}.
struct TrafficKind {
  const char* name;
  CollectiveBytes CollectiveTraffic::*bytes;
};
constexpr TrafficKind kTrafficKinds[] = {{"allgather", &CollectiveTraffic::allgather},
                                         {"reduce_scatter", &CollectiveTraffic::reduce_scatter},
                                         {"allreduce", &CollectiveTraffic::allreduce},
                                         {"broadcast", &CollectiveTraffic::broadcast},
                                         {"alltoall", &CollectiveTraffic::alltoall}};

json traffic_to_json(const CollectiveTraffic& traffic) {
  json out = {{"sent_bytes", traffic.sent()}, {"received_bytes", traffic.received()}};
  for (const TrafficKind& kind : kTrafficKinds) {
    const CollectiveBytes& bytes = traffic.*kind.bytes;
    out[kind.name] = {{"calls", bytes.calls}, {"sent_bytes", bytes.sent}, {"received_bytes", bytes.received}};
  }
  return out;
}

CollectiveTraffic traffic_from_json(const json& j) {
  CollectiveTraffic traffic;
  auto number = [](const json& object, const char* key) -> std::uint64_t {
    return object.contains(key) && object[key].is_number_unsigned() ? object[key].get<std::uint64_t>() : 0;
  };
  for (const TrafficKind& kind : kTrafficKinds) {
    if (!j.is_object() || !j.contains(kind.name) || !j[kind.name].is_object()) continue;
    CollectiveBytes& bytes = traffic.*kind.bytes;
    bytes.calls = number(j[kind.name], "calls");
    bytes.sent = number(j[kind.name], "sent_bytes");
    bytes.received = number(j[kind.name], "received_bytes");
  }
  return traffic;
}

}  // namespace

json MetricsLine::to_json() const {
  return {{"step", step},
          {"epoch", epoch},
          {"loss", loss},
          {"lr", lr},
          {"grad_norm", grad_norm ? json(*grad_norm) : json(nullptr)},
          {"loss_scale", loss_scale},
          {"skipped", skipped},
          {"tokens_per_s", tokens_per_s},
          {"useful_tokens_per_s", useful_tokens_per_s},
          {"padding_fraction", padding_fraction},
          {"mfu", mfu ? json(*mfu) : json(nullptr)},
          {"seconds", seconds},
          {"comm_wait_s", traffic.wait_seconds},
          {"traffic", traffic_to_json(traffic)}};
}

std::optional<MetricsLine> MetricsLine::from_json(const json& j) {
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number() || j.contains("val_loss")) return std::nullopt;
  auto number = [&](const char* key) -> std::optional<double> {
    if (!j.contains(key) || !j[key].is_number()) return std::nullopt;
    return j[key].get<double>();
  };
  MetricsLine line;
  line.step = static_cast<std::int64_t>(j["step"].get<double>());
  line.epoch = static_cast<std::int64_t>(number("epoch").value_or(0));
  line.loss = number("loss").value_or(NAN);
  line.lr = number("lr").value_or(0);
  line.grad_norm = number("grad_norm");
  line.loss_scale = number("loss_scale").value_or(NAN);
  line.skipped = j.contains("skipped") && j["skipped"].is_boolean() && j["skipped"].get<bool>();
  line.tokens_per_s = number("tokens_per_s").value_or(0);
  line.useful_tokens_per_s = number("useful_tokens_per_s").value_or(0);
  line.padding_fraction = number("padding_fraction").value_or(0);
  line.mfu = number("mfu");
  line.seconds = number("seconds").value_or(0);
  if (j.contains("traffic")) line.traffic = traffic_from_json(j["traffic"]);
  line.traffic.wait_seconds = number("comm_wait_s").value_or(0);
  return line;
}

json ValidationLine::to_json() const {
  return {{"step", step},
          {"epoch", epoch},
          {"val_loss", val_loss},
          {"val_tokens", val_tokens},
          {"best_val_loss", best_val_loss},
          {"evaluations_without_improvement", evaluations_without_improvement},
          {"seconds", seconds}};
}

std::optional<ValidationLine> ValidationLine::from_json(const json& j) {
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) return std::nullopt;
  if (!j.contains("val_loss") || !j["val_loss"].is_number()) return std::nullopt;
  auto number = [&](const char* key, double fallback) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
  };
  ValidationLine line;
  line.step = static_cast<std::int64_t>(j["step"].get<double>());
  line.epoch = static_cast<std::int64_t>(number("epoch", 0));
  line.val_loss = j["val_loss"].get<double>();
  line.val_tokens = static_cast<std::int64_t>(number("val_tokens", 0));
  line.best_val_loss = number("best_val_loss", NAN);
  line.evaluations_without_improvement = static_cast<std::int64_t>(number("evaluations_without_improvement", 0));
  line.seconds = number("seconds", 0);
  return line;
}

MetricsFile read_metrics(const std::string& path) {
  MetricsFile file;
  const JsonLinesRead read = read_json_lines(path, [&](const json& record) {
    if (auto line = MetricsLine::from_json(record)) file.lines.push_back(*line);
    else if (auto validation = ValidationLine::from_json(record)) file.validation.push_back(*validation);
  });
  file.found = read.found;
  file.bad = read.bad;
  return file;
}

}  // namespace metareuse
