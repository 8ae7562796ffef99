// Reflect mode, the strategist of Didolkar et al. 2025 ("Metacognitive Reuse"):
// a model reads solved records and writes behaviors, `behavior_name:
// instruction` lines. This module is torch-free: the model is a Strategist
// callback (patterns/strategist.h builds one on generate_batch, in the torch
// binary), so the parse, the merge and the reduction are tested without a model.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/corpus/corpus.h"
#include "metareuse/model/generation_options.h"  // the strategist's decoding (torch-free)
#include "metareuse/patterns/handbook.h"

namespace metareuse {
class Communicator;

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

// Throws InputError, naming `where` (the template's file), when the template
// has no {reasoning} placeholder.
void check_reflection_prompt(std::string_view prompt_template, std::string_view where);

// The prompt for one record: `prompt_template` with {question}, {reasoning}
// and {solution} replaced. Throws InputError when it has no {reasoning}.
std::string reflection_prompt(std::string_view prompt_template, const Record& record);

// Replies to prompts, in order. `sequence_ids` (global record order) seed any
// sampling, so a reply does not depend on the batch or rank.
using Strategist =
    std::function<std::vector<std::string>(const std::vector<std::string>& prompts,
                                           const std::vector<std::uint64_t>& sequence_ids)>;

// The shipped prompt, configs/reflect_prompt.txt, built into the binary (so an
// installed binary has it without the source tree).
std::string_view default_reflection_prompt();

// The template in `path`, checked (check_reflection_prompt); "" gives
// default_reflection_prompt(). An unreadable file is an InputError naming it.
std::string load_reflection_prompt(const std::string& path);

struct ReflectOptions {
  std::string prompt_template;  // default_reflection_prompt(), or the user's
  std::string prompt_source = "the reflection prompt";  // its file, for errors
  std::size_t batch_size = 8;   // prompts per Strategist call
  std::uint64_t min_support = 1;
  std::size_t top_k = 32;       // 0: all
  std::size_t examples = 3;     // record ids per behavior
  std::uint64_t max_records = 0;  // only the first N good records of the corpus, in corpus order; 0: all
  ReadOptions read;
  // The replies log (core/answer_log.h): every record's reply, appended after
  // each round, so a stopped or failed run goes on from it and a run with
  // other merge options (min_support, top_k) reuses every reply. "": none.
  std::string replies;
  nlohmann::json strategist;  // what makes a reply (describe_strategist), in the log's header
  double time_limit = 0;      // seconds; stop between two rounds after it (0: none)
};

// Collective. Every rank reads the corpus (parsing is cheap next to a model's
// reply), and the good records, in corpus order, are dealt round robin: record
// i goes to rank i % size, so every rank has a share even when max_records
// keeps only the start of one file. Each rank prompts the strategist with its
// share, parses the replies, and the behaviors of every rank are gathered and merged
// by behavior_key: support is the number of records that produced one, the
// name and instruction are those of its first record (in corpus order), the
// examples its first records. Sorted by support, then key. Every rank gets
// the same handbook, and it does not depend on the rank count when the
// strategist's replies do not (greedy decoding). Throws InputError when no
// behavior is left (none parsed, or none with min_support), naming the counts.
//
// Rounds: the records without a reply in options.replies, ranks x batch_size
// at a time; a strategist that throws marks its batch's records failed (in
// the stats and the log) and the others go on. A stop signal (SIGTERM,
// SIGUSR1, SIGINT) or options.time_limit stops every rank between two rounds:
// nullopt, with the replies so far kept in the log for the next run.
std::optional<Handbook> reflect_patterns(const std::vector<std::string>& files, const ReflectOptions& options,
                                         const Strategist& strategist, Communicator& communicator);

// The replies log beside a handbook: handbook.json -> handbook.replies.jsonl.
std::string reflect_replies_path(const std::string& handbook_path);

// What builds the strategist from a model (patterns.model and friends).
struct StrategistOptions {
  std::string model;            // a Hugging Face folder or a metareuse checkpoint
  std::string tokenizer;        // "": the model's own (resolve_text_format)
  std::string template_name = "auto";  // auto: the model's own chat template, else Llama 3's headers
  // patterns.max_new_tokens, batch_size and temperature (0: greedy; > 0:
  // sampled, seeded by (run.seed, record)); the stop ids come with the template.
  GenerationOptions decoding;
};

// The options that decide a reply, with the model's (and tokenizer's) files'
// sizes and times, for the replies log's header.
nlohmann::json describe_strategist(const StrategistOptions& options);

// Supplied by the torch binary (make_model_strategist in patterns/strategist.h);
// the torch-free front execs that binary for reflect mode.
using StrategistFactory = std::function<Strategist(const StrategistOptions&)>;

}  // namespace metareuse
