// metareuse prepare: augmented examples -> the tokenized, packed HDF5 set.
#include <fmt/format.h>

#include "commands.h"
#include "flags.h"
#include "metareuse/run/data_stages.h"
#include "metareuse/run/layout.h"

namespace metareuse::cli_detail {

void prepare_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--input", "dataset.input", "Augmented JSON Lines (dataset.input)", overrides);
  add_value_flag(app, "--out", "dataset.output", "The HDF5 file to write (dataset.output)", overrides);
  add_value_flag(app, "--tokenizer", "tokenizer.path", "Tokenizer file (tokenizer.path)", overrides);
  add_value_flag(app, "--sequence-length", "dataset.sequence_length", "Tokens per sequence (dataset.sequence_length)",
                 overrides);
}

int prepare_run(CommandContext& context) {
  std::string output = context.config.get_string("dataset.output");
  if (output.empty()) output = RunLayout::for_config(context.config).dataset();
  const Config& config = context.config;
  return prepare_stage(
      prepare_stage_options(config, training_text_format(config), config.get_string("dataset.input"), output),
      context.runtime);
}

}  // namespace metareuse::cli_detail
