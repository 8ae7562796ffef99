// Reflect mode, the strategist of Didolkar et al. 2025 ("Metacognitive Reuse"):
// a model reads solved records and writes behaviors, `behavior_name:
// instruction` lines. This module is torch-free: the model is a Strategist
// callback (the CLI supplies one built on generate_batch), so the parse, the
// merge and the reduction are tested without a model.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/handbook.h"

namespace metareuse {
class Communicator;
}

namespace metareuse::patterns {

struct Behavior {
  std::string name;         // "behavior_unit_rate"
  std::string instruction;  // "Divide the total by the count to get the amount for one."
};

struct ParsedReflection {
  std::vector<Behavior> behaviors;
  std::uint64_t malformed = 0;  // non-blank lines that are not a behavior
};

// The behaviors in a model's reply, one per line: `name: instruction`, after an
// optional list marker ("-", "*", "1.", "2)") and with optional ** or `
// around the name. The name has 1 to 8 words of letters, digits, '_' or '-'
// and becomes lowercase snake case with the prefix "behavior_"; the
// instruction has at least 3 words. Every other non-blank line is malformed.
ParsedReflection parse_reflection(std::string_view reply);

// The canonical key behaviors merge by: the name without "behavior_" and the
// instruction's normalised form (text.h), "unit_rate|divide the total by ...".
std::string behavior_key(const Behavior& behavior);

// The prompt for one record: `prompt_template` with {question}, {reasoning}
// and {solution} replaced. Throws InputError when it has no {reasoning}.
std::string reflection_prompt(std::string_view prompt_template, const corpus::Record& record);

// Replies to prompts, in order. `sequence_ids` (global record order) seed any
// sampling, so a reply does not depend on the batch or rank.
using Strategist =
    std::function<std::vector<std::string>(const std::vector<std::string>& prompts,
                                           const std::vector<std::uint64_t>& sequence_ids)>;

struct ReflectOptions {
  std::string prompt_template;  // configs/reflect_prompt.txt, or the user's
  std::size_t batch_size = 8;   // prompts per Strategist call
  std::uint64_t min_support = 1;
  std::size_t top_k = 32;       // 0: all
  std::size_t examples = 3;     // record ids per behavior
  std::uint64_t max_lines = 0;  // only the records in the first N lines of the first file; 0: all
  corpus::ReadOptions read;
};

// Collective. Each rank prompts the strategist with its share of the records,
// parses the replies, and the behaviors of every rank are gathered and merged
// by behavior_key: support is the number of records that produced one, the
// name and instruction are those of its first record (in corpus order), the
// examples its first records. Sorted by support, then key. Every rank gets
// the same handbook, and it does not depend on the rank count when the
// strategist's replies do not (greedy decoding).
Handbook reflect_patterns(const std::vector<std::string>& files, const ReflectOptions& options,
                          const Strategist& strategist, Communicator& communicator);

}  // namespace metareuse::patterns
