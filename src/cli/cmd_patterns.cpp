// metareuse patterns: mine the corpus (or import a behavior handbook) into a
// handbook. Flags are config overrides, so a flag and its key never disagree.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "flags.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/corpus/corpus.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/miner.h"

namespace metareuse::cli {

corpus::ReadOptions corpus_read_options(const Config& config) {
  corpus::ReadOptions read;
  const nlohmann::json& fields = config.get_json("corpus.fields");
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    std::string value = it.value().get<std::string>();
    if (it.key() == "question") read.fields.question = value;
    else if (it.key() == "reasoning") read.fields.reasoning = value;
    else if (it.key() == "solution") read.fields.solution = value;
    else throw ConfigError(fmt::format("corpus.fields: unknown role '{}' (valid: question, reasoning, solution)", it.key()));
  }
  read.max_depth = static_cast<int>(config.get_int("corpus.max_depth"));
  return read;
}

void patterns_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_list_flag(app, "--corpus", "corpus.files", "JSON Lines corpus file or glob (repeatable)", overrides);
  add_value_flag(app, "--out", "patterns.out", "Handbook JSON to write", overrides);
  add_value_flag(app, "--mode", "patterns.mode", "exact | normalized (default)", overrides);
  add_value_flag(app, "--min-support", "patterns.min_support", "Fewest records per pattern", overrides);
  add_value_flag(app, "--top-k", "patterns.top_k", "Patterns kept (0: all)", overrides);
  add_value_flag(app, "--max-candidates", "patterns.max_candidates", "Per-rank candidate cap (0: none)", overrides);
  add_list_flag(app, "--holdout", "patterns.holdout", "JSON Lines file whose coverage is reported (repeatable)",
                overrides);
  add_value_flag(app, "--import", "patterns.import", "Behavior handbook {name: instruction} to use instead of mining",
                 overrides);
  app.add_flag_callback("--strict", [&overrides]() { overrides.push_back("corpus.strict=true"); },
                        "Exit with status 4 when any record is bad");
}

int patterns_execute(CommandContext& context, const std::string& out_path) {
  const Config& config = context.config;
  Communicator& world = context.runtime.world();
  Stopwatch watch;
  patterns::Handbook handbook;
  std::uint64_t bad_lines = 0;
  const std::string import_path = config.get_string("patterns.import");
  if (!import_path.empty()) {
    handbook = patterns::import_behavior_handbook(import_path);
    log::info("imported {} behaviors from {}", handbook.patterns.size(), import_path);
  } else {
    patterns::MiningOptions options;
    options.mode = patterns::parse_mining_mode(config.get_string("patterns.mode"));
    options.min_support = static_cast<std::uint64_t>(config.get_int("patterns.min_support"));
    options.top_k = static_cast<std::size_t>(config.get_int("patterns.top_k"));
    options.min_words = static_cast<std::size_t>(config.get_int("patterns.min_words"));
    options.max_phrase_words = static_cast<std::size_t>(config.get_int("patterns.max_phrase_words"));
    options.max_candidates = static_cast<std::size_t>(config.get_int("patterns.max_candidates"));
    options.containment_ratio = config.get_number("patterns.containment_ratio");
    options.selection = config.get_string("patterns.selection") == "support" ? patterns::Selection::kSupport
                                                                             : patterns::Selection::kCoverage;
    options.pool_size = static_cast<std::size_t>(config.get_int("patterns.pool_size"));
    options.group_bytes = static_cast<std::size_t>(config.get_int("patterns.group_memory_mb")) << 20;
    options.read = corpus_read_options(config);
    if (options.max_phrase_words < options.min_words) {
      throw ConfigError("patterns.max_phrase_words must be >= patterns.min_words");
    }
    std::vector<std::string> files = corpus::expand_corpus_files(config.get_string_list("corpus.files"));
    patterns::MiningResult result = patterns::mine_patterns(files, options, world);
    handbook = std::move(result.handbook);
    bad_lines = result.corpus.bad_lines;
    log::info("corpus: {} in {} file(s), {:.1f} MB", corpus::describe_stats(result.corpus), files.size(),
              static_cast<double>(result.corpus.bytes) / 1e6);
    log::info("patterns ({} mode, {} rank(s)): {} distinct candidates, {} with support >= {}, {} kept; "
              "counting {:.2f} s, reduction {:.2f} s",
              handbook.mode, world.size(), result.global_candidates, result.qualified, options.min_support,
              handbook.patterns.size(), result.seconds_count, result.seconds_reduce);
    for (std::size_t i = 0; i < handbook.patterns.size() && i < 5; ++i) {
      log::info("  {:>7}  {}", handbook.patterns[i].support, handbook.patterns[i].text);
    }
  }
  std::vector<std::string> holdout = config.get_string_list("patterns.holdout");
  if (!holdout.empty()) {
    std::vector<std::string> holdout_files = corpus::expand_corpus_files(holdout);
    patterns::Coverage coverage =
        patterns::holdout_coverage(handbook.patterns, holdout_files, corpus_read_options(config), world);
    log::info("holdout coverage: {} of {} records ({:.2f}%) contain at least one of the {} patterns", coverage.covered,
              coverage.records, 100.0 * coverage.share(), handbook.patterns.size());
    handbook.stats["holdout"] = {{"files", holdout_files},
                                 {"records", coverage.records},
                                 {"covered", coverage.covered},
                                 {"coverage", coverage.share()}};
  }
  if (context.runtime.rank() == 0) patterns::write_handbook(handbook, out_path);
  world.barrier();
  log::info("handbook: {} ({} patterns) in {:.2f} s", out_path, handbook.patterns.size(), watch.seconds());
  if (bad_lines > 0 && config.get_bool("corpus.strict")) {
    log::error("--strict: {} bad line(s) in the corpus", bad_lines);
    return kExitBadRecords;
  }
  return kExitOk;
}

int patterns_run(CommandContext& context) {
  std::string out = context.config.get_string("patterns.out");
  if (out.empty()) out = run_folder(context.config) + "/handbook.json";
  return patterns_execute(context, out);
}

}  // namespace metareuse::cli
