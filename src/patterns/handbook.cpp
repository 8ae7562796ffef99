#include "metareuse/patterns/handbook.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <unordered_set>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/patterns/text.h"

namespace metareuse {

using json = nlohmann::json;

void make_names_unique(std::vector<Pattern>& patterns) {
  std::unordered_set<std::string> names;
  for (Pattern& pattern : patterns) {
    const std::string base = pattern.name;
    for (int suffix = 2; !names.insert(pattern.name).second; ++suffix) {
      pattern.name = fmt::format("{}_{}", base, suffix);
    }
  }
}

nlohmann::ordered_json handbook_to_json(const Handbook& handbook) {
  using ordered = nlohmann::ordered_json;
  ordered patterns = ordered::array();
  for (const Pattern& pattern : handbook.patterns) {
    patterns.push_back({{"name", pattern.name},
                        {"instruction", pattern.instruction},
                        {"support", pattern.support},
                        {"examples", pattern.examples},
                        {"text", pattern.text},
                        {"kind", pattern.kind}});
  }
  ordered document = ordered::object();
  document["format"] = kHandbookFormat;
  document["version"] = kHandbookVersion;
  document["records"] = handbook.records;
  document["mode"] = handbook.mode;
  document["exact_counts"] = handbook.exact_counts;
  document["patterns"] = std::move(patterns);
  document["stats"] = ordered(handbook.stats);
  document["config"] = ordered(handbook.config);
  return document;
}

Handbook handbook_from_json(const json& document, const std::string& source) {
  auto fail = [&](const std::string& why) { return InputError(fmt::format("{}: {}", source, why)); };
  if (!document.is_object()) throw fail("a handbook must be a JSON object");
  if (document.value("format", std::string()) != kHandbookFormat) {
    throw fail(fmt::format("not a metareuse handbook (no \"format\": \"{}\"); a behavior handbook "
                           "{{\"name\": \"instruction\"}} is read with --import",
                           kHandbookFormat));
  }
  int version = document.value("version", 0);
  if (version != kHandbookVersion && version != 1) {
    throw fail(fmt::format("handbook version {} is not supported (this build reads version {}); "
                           "regenerate it with `metareuse patterns`",
                           version, kHandbookVersion));
  }
  Handbook handbook;
  try {
    handbook.records = document.at("records").get<std::uint64_t>();
    handbook.mode = document.value("mode", std::string("exact"));
    handbook.exact_counts = document.value("exact_counts", true);
    handbook.stats = document.value("stats", json::object());
    handbook.config = document.value("config", json::object());
    for (const json& item : document.at("patterns")) {
      Pattern pattern;
      pattern.text = item.at("text").get<std::string>();
      pattern.support = item.value("support", std::uint64_t{0});
      pattern.kind = item.value("kind", std::string("sentence"));
      pattern.examples = item.value("examples", std::vector<std::string>{});
      // Version 1 called the name "behavior" and had no instruction.
      pattern.name = item.value("name", item.value("behavior", behavior_name(pattern.text)));
      pattern.instruction = item.value(
          "instruction", pattern.kind == "imported" ? pattern.text : behavior_instruction(pattern.text));
      handbook.patterns.push_back(std::move(pattern));
    }
  } catch (const json::exception& e) {
    throw fail(fmt::format("malformed handbook: {}", e.what()));
  }
  return handbook;
}

namespace {
json parse_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the handbook: {}", path, why_unreadable(path)));
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
}
}  // namespace

void write_handbook(const Handbook& handbook, const std::string& path) {
  // Checked and atomic: readers never see half a file, a failed write keeps the old one.
  write_file_atomic(path, handbook_to_json(handbook).dump(1, ' ', false,
                                                          nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

Handbook read_handbook(const std::string& path) { return handbook_from_json(parse_file(path), path); }

Handbook import_behavior_handbook(const std::string& path) {
  // ordered_json keeps the file's order of behaviors.
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the behavior handbook: {}", path, why_unreadable(path)));
  nlohmann::ordered_json document;
  try {
    document = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::ordered_json::parse_error& e) {
    throw InputError(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
  if (!document.is_object()) throw InputError(fmt::format("{}: a behavior handbook must be a JSON object", path));
  Handbook handbook;
  handbook.mode = "imported";
  for (auto item = document.begin(); item != document.end(); ++item) {
    if (!item.value().is_string()) {
      throw InputError(fmt::format("{}: behavior \"{}\" must map to an instruction string, got {}", path,
                                   item.key(), item.value().type_name()));
    }
    Pattern pattern;
    pattern.text = item.value().get<std::string>();
    pattern.kind = "imported";
    pattern.name = item.key();
    pattern.instruction = pattern.text;
    handbook.patterns.push_back(std::move(pattern));
  }
  handbook.config = {{"mode", "imported"}, {"import", path}};
  handbook.stats = {{"patterns", handbook.patterns.size()}};
  return handbook;
}

}  // namespace metareuse
