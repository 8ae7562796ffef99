// metareuse augment: training examples with handbook patterns in the prompt.
#include "commands.h"
#include "flags.h"
#include "metareuse/run/data_stages.h"
#include "metareuse/run/layout.h"

namespace metareuse::cli_detail {

void augment_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_list_flag(app, "--corpus", "corpus.files", "JSON Lines corpus file or glob (repeatable)", overrides);
  add_value_flag(app, "--handbook", "augment.handbook", "Handbook JSON from `metareuse patterns`", overrides);
  add_value_flag(app, "--out", "augment.out", "Output JSON Lines", overrides);
  add_value_flag(app, "--mode", "augment.mode", "global | retrieval | used | none", overrides);
  add_value_flag(app, "--top-k", "augment.top_k", "Patterns per example", overrides);
  app.add_flag_callback("--strict", [&overrides]() { overrides.push_back("corpus.strict=true"); },
                        "Exit with status 4 when any record is bad");
}

int augment_run(CommandContext& context) {
  const RunLayout layout = RunLayout::for_config(context.config);
  std::string handbook = context.config.get_string("augment.handbook");
  if (handbook.empty()) handbook = layout.handbook();
  std::string out = context.config.get_string("augment.out");
  if (out.empty()) out = layout.augmented();
  return augment_stage(augment_stage_options(context.config, handbook, out), context.runtime);
}

}  // namespace metareuse::cli_detail
