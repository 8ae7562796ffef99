// A mined pattern phrased as a behavior by a model: the strategist (reflect.h)
// reads a pattern and the sentences that show it and writes one
// `behavior_name: instruction` line, parsed by parse_reflection (the rule
// reflect mode reads behaviors with). A reply without such a line leaves the
// pattern's mined name and instruction as they were.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/patterns/handbook.h"
#include "metareuse/patterns/reflect.h"  // Strategist, parse_reflection

namespace metareuse {
class Communicator;

// The shipped prompt, configs/phrase_prompt.txt, built into the binary: it
// has {pattern} (the pattern's text) and {sentences} (one "- sentence" line
// each, as instructions: behavior_instruction in text.h).
std::string_view default_phrasing_prompt();

// The template in `path`, which must have {pattern}; "" gives
// default_phrasing_prompt(). An unreadable file or one without {pattern} is
// an InputError naming it.
std::string load_phrasing_prompt(const std::string& path);

// `prompt_template` with {pattern} and {sentences} filled in.
std::string phrasing_prompt(std::string_view prompt_template, const Pattern& pattern,
                            const std::vector<std::string>& sentences);

struct PhrasingOptions {
  std::string prompt_template = std::string(default_phrasing_prompt());
  std::size_t batch_size = 8;  // prompts per Strategist call
};

struct PhrasingCounts {
  std::uint64_t replies = 0;     // one per pattern
  std::uint64_t phrased = 0;     // replies that parsed as a behavior
  std::uint64_t kept_mined = 0;  // replies that did not: the mined sentence stays
};

// Collective. Pattern i (handbook order) is rank i % size's: each rank asks
// the strategist about its share, one reply per pattern with `i` as its
// sequence id (so a sampled reply does not depend on the batch or rank), and
// the parsed replies are gathered so that every rank ends with the same
// handbook. A reply's first behavior line gives the pattern's name and
// instruction; names are then made unique (make_names_unique). `sentences[i]`
// are pattern i's sentences, best first (MiningResult::pattern_sentences).
// Records the counts in handbook.stats["phrasing"] and returns them.
PhrasingCounts phrase_patterns(Handbook& handbook, const std::vector<std::vector<std::string>>& sentences,
                               const PhrasingOptions& options, const Strategist& strategist,
                               Communicator& communicator);

}  // namespace metareuse
