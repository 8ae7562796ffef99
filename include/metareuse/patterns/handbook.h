// The handbook: the mined (or imported) pattern set, as a versioned JSON file
// that the augment stage reads.
#pragma once

#include <nlohmann/json.hpp>  // the file format

#include <cstdint>
#include <string>
#include <vector>

namespace metareuse {

constexpr const char* kHandbookFormat = "metareuse.handbook";
constexpr int kHandbookVersion = 2;  // 2 added name and instruction; version 1 still reads

struct Pattern {
  std::string text;                   // exact sentence, or normalised form in normalized mode
  std::uint64_t support = 0;          // records containing it (0 for imported behaviors)
  std::string kind;                   // "sentence", "phrase" or "imported"
  std::vector<std::string> examples;  // a few record ids, "file.jsonl:line"
  std::string name;                   // "behavior_find_total_number" (unique in a handbook)
  // What a prompt shows (behavior_instruction in text.h): exact mode, the
  // sentence; normalized mode, the most frequent full sentence containing the
  // pattern; numbers as <num> slots. Imported: the behavior's instruction.
  std::string instruction;
};

struct Handbook {
  std::uint64_t records = 0;
  std::string mode;       // "exact", "normalized" or "imported"
  bool exact_counts = true;  // false when the candidate cap dropped candidates
  std::vector<Pattern> patterns;
  nlohmann::json stats = nlohmann::json::object();   // records, bad lines, candidates, ...
  nlohmann::json config = nlohmann::json::object();  // the mining config that made it
};

// Behavior names are keys: the second pattern with a name gets "<name>_2"
// (or _3, ...: the first suffix no pattern has), in handbook order.
void make_names_unique(std::vector<Pattern>& patterns);

// Key order: format, version, records, mode, exact_counts, patterns, stats, config.
// Each pattern: name, instruction, support, examples, text, kind.
nlohmann::ordered_json handbook_to_json(const Handbook& handbook);
// Throws InputError naming the file on a bad or foreign file.
Handbook handbook_from_json(const nlohmann::json& document, const std::string& source);
void write_handbook(const Handbook& handbook, const std::string& path);
Handbook read_handbook(const std::string& path);

// The paper's behavior handbook, {"behavior_name": "instruction", ...}, as a
// handbook whose patterns are the instructions (kind "imported"), in file order.
Handbook import_behavior_handbook(const std::string& path);

}  // namespace metareuse
