// One line of augmented.jsonl, the augment stage's output: written by
// augment_corpus, read by prepare (prompt and target) and by
// read_pattern_contexts (question and patterns). Torch-free.
#pragma once

#include <nlohmann/json.hpp>  // the line format

#include <initializer_list>
#include <string>
#include <vector>

namespace metareuse {

struct AugmentedExample {
  std::string id;                      // the corpus record: "file:line"
  std::string prompt;                  // pattern prefix + question + "\n"
  std::string target;                  // reasoning + "\n#### " + solution (the loss goes here)
  std::vector<std::string> patterns;   // the prompt's pattern texts
  std::vector<std::string> behaviors;  // their behavior names, in the same order
  std::string question;
  std::string solution;

  // The keys, in the order a line holds them.
  static constexpr const char* kId = "id";
  static constexpr const char* kPrompt = "prompt";
  static constexpr const char* kTarget = "target";
  static constexpr const char* kPatterns = "patterns";
  static constexpr const char* kBehaviors = "behaviors";
  static constexpr const char* kQuestion = "question";
  static constexpr const char* kSolution = "solution";

  // Keys in the order above; the writer dumps it as one line.
  nlohmann::ordered_json to_json() const;
  // Each reader names the keys it needs: those must be there with their type
  // (a string; an array for patterns and behaviors), checked in the order
  // given, or InputError "no string field \"prompt\"" / "no array field
  // \"patterns\"". Other keys are read when they have their type (so a
  // hand-written {"prompt", "target"} file prepares); array entries that are
  // not strings are skipped. Not an object: InputError.
  static AugmentedExample from_json(const nlohmann::json& j, std::initializer_list<const char*> required);
};

}  // namespace metareuse
