#include "metareuse/augment/augmented_example.h"

#include <fmt/format.h>

#include <cstring>

#include "metareuse/core/error.h"

namespace metareuse {
namespace {

bool is_array_key(const char* key) {
  return std::strcmp(key, AugmentedExample::kPatterns) == 0 || std::strcmp(key, AugmentedExample::kBehaviors) == 0;
}

void read_string(const nlohmann::json& j, const char* key, std::string& out) {
  auto found = j.find(key);
  if (found != j.end() && found->is_string()) out = found->get<std::string>();
}

void read_strings(const nlohmann::json& j, const char* key, std::vector<std::string>& out) {
  auto found = j.find(key);
  if (found == j.end() || !found->is_array()) return;
  for (const auto& item : *found) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
}

}  // namespace

nlohmann::ordered_json AugmentedExample::to_json() const {
  nlohmann::ordered_json j;
  j[kId] = id;
  j[kPrompt] = prompt;
  j[kTarget] = target;
  j[kPatterns] = patterns;
  j[kBehaviors] = behaviors;
  j[kQuestion] = question;
  j[kSolution] = solution;
  return j;
}

AugmentedExample AugmentedExample::from_json(const nlohmann::json& j, std::initializer_list<const char*> required) {
  if (!j.is_object()) throw InputError("the line is not a JSON object");
  for (const char* key : required) {
    auto found = j.find(key);
    const bool array = is_array_key(key);
    if (found == j.end() || (array ? !found->is_array() : !found->is_string())) {
      throw InputError(fmt::format("no {} field \"{}\"", array ? "array" : "string", key));
    }
  }
  AugmentedExample example;
  read_string(j, kId, example.id);
  read_string(j, kPrompt, example.prompt);
  read_string(j, kTarget, example.target);
  read_strings(j, kPatterns, example.patterns);
  read_strings(j, kBehaviors, example.behaviors);
  read_string(j, kQuestion, example.question);
  read_string(j, kSolution, example.solution);
  return example;
}

}  // namespace metareuse
