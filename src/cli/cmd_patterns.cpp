// metareuse patterns: mine the corpus (or import a behavior handbook) into a
// handbook. Flags are config overrides, so a flag and its key never disagree.
#include "commands.h"
#include "flags.h"
#include "metareuse/run/data_stages.h"
#include "metareuse/run/layout.h"

namespace metareuse::cli_detail {

void patterns_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_list_flag(app, "--corpus", "corpus.files", "JSON Lines corpus file or glob (repeatable)", overrides);
  add_value_flag(app, "--out", "patterns.out", "Handbook JSON to write", overrides);
  add_value_flag(app, "--mode", "patterns.mode", "exact | normalized (default) | reflect (needs --model)", overrides);
  add_value_flag(app, "--model", "patterns.model",
                 "The strategist, a Hugging Face folder or a metareuse checkpoint: reflect mode writes behaviors "
                 "from records; exact and normalized mode phrase each mined pattern as a behavior",
                 overrides);
  add_value_flag(app, "--reflect-prompt", "patterns.reflect_prompt",
                 "reflect mode: prompt template file with {reasoning} (default: configs/reflect_prompt.txt)", overrides);
  add_value_flag(app, "--phrase-prompt", "patterns.phrase_prompt",
                 "With --model, exact or normalized mode: prompt template file with {pattern} (default: "
                 "configs/phrase_prompt.txt)",
                 overrides);
  add_value_flag(app, "--max-new-tokens", "patterns.max_new_tokens", "With --model: most tokens per reply", overrides);
  add_value_flag(app, "--batch-size", "patterns.batch_size", "With --model: prompts answered together", overrides);
  add_value_flag(app, "--max-records", "patterns.max_records", "reflect mode: only the first N records (0: all)",
                 overrides);
  add_value_flag(app, "--temperature", "patterns.temperature", "With --model: 0 greedy (default), > 0 sampled",
                 overrides);
  add_value_flag(app, "--tokenizer", "tokenizer.path",
                 "With --model: tokenizer file (default: the model folder's tokenizer.json)", overrides);
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

// A model (reflect mode, or phrasing mined patterns) needs the torch binary;
// an import uses no model.
bool patterns_needs_torch(const Config& config) {
  if (!config.get_string("patterns.import").empty()) return false;
  return config.get_string("patterns.mode") == "reflect" || !config.get_string("patterns.model").empty();
}

int patterns_run_with(CommandContext& context, const StrategistFactory& make_strategist) {
  std::string out = context.config.get_string("patterns.out");
  if (out.empty()) out = RunLayout::for_config(context.config).handbook();
  return patterns_stage(patterns_stage_options(context.config, out), context.runtime, make_strategist);
}

int patterns_run(CommandContext& context) { return patterns_run_with(context, {}); }

}  // namespace metareuse::cli_detail
