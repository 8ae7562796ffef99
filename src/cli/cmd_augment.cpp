// metareuse augment: training examples with handbook patterns in the prompt.
#include <fmt/format.h>

#include "commands.h"
#include "flags.h"
#include "metareuse/augment/augment.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"

namespace metareuse::cli {

void augment_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_list_flag(app, "--corpus", "corpus.files", "JSON Lines corpus file or glob (repeatable)", overrides);
  add_value_flag(app, "--handbook", "augment.handbook", "Handbook JSON from `metareuse patterns`", overrides);
  add_value_flag(app, "--out", "augment.out", "Output JSON Lines", overrides);
  add_value_flag(app, "--mode", "augment.mode", "global | retrieval | used | none", overrides);
  add_value_flag(app, "--top-k", "augment.top_k", "Patterns per example", overrides);
  app.add_flag_callback("--strict", [&overrides]() { overrides.push_back("corpus.strict=true"); },
                        "Exit with status 4 when any record is bad");
}

int augment_execute(CommandContext& context, const std::string& handbook_path, const std::string& out_path) {
  const Config& config = context.config;
  Communicator& world = context.runtime.world();
  Stopwatch watch;
  patterns::Handbook handbook = patterns::read_handbook(handbook_path);
  augment::AugmentOptions options;
  options.mode = augment::parse_augment_mode(config.get_string("augment.mode"));
  options.top_k = static_cast<std::size_t>(config.get_int("augment.top_k"));
  options.bm25_k1 = config.get_number("augment.bm25_k1");
  options.bm25_b = config.get_number("augment.bm25_b");
  options.read = corpus_read_options(config);
  std::vector<std::string> files = corpus::expand_corpus_files(config.get_string_list("corpus.files"));
  augment::AugmentStats stats = augment::augment_corpus(files, handbook, options, out_path, world);
  log::info("corpus: {}", corpus::describe_stats(stats.corpus));
  log::info("augment ({} mode, top {} of {} patterns): {} examples to {}{} in {:.2f} s",
            augment::augment_mode_name(options.mode), options.top_k, handbook.patterns.size(), stats.examples, out_path,
            options.mode == augment::AugmentMode::kRetrieval
                ? fmt::format(" ({} with retrieved patterns, the rest with the global top)", stats.retrieved)
                : std::string(),
            watch.seconds());
  if (stats.corpus.bad_lines > 0 && config.get_bool("corpus.strict")) {
    log::error("--strict: {} bad line(s) in the corpus", stats.corpus.bad_lines);
    return kExitBadRecords;
  }
  return kExitOk;
}

int augment_run(CommandContext& context) {
  const std::string folder = run_folder(context.config);
  std::string handbook = context.config.get_string("augment.handbook");
  if (handbook.empty()) handbook = folder + "/handbook.json";
  std::string out = context.config.get_string("augment.out");
  if (out.empty()) out = folder + "/augmented.jsonl";
  return augment_execute(context, handbook, out);
}

}  // namespace metareuse::cli
