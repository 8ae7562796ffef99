// metareuse prepare: augmented examples -> the tokenized, packed HDF5 set.
#include <fmt/format.h>

#include "commands.h"
#include "metareuse/run/data_stages.h"
#include "metareuse/run/layout.h"

namespace metareuse::cli {

void prepare_options(CLI::App& app, std::vector<std::string>& overrides) {
  auto set = [&overrides](const char* key) {
    return [&overrides, key](const std::string& value) { overrides.push_back(fmt::format("{}={}", key, value)); };
  };
  app.add_option_function<std::string>("--input", set("dataset.input"), "Augmented JSON Lines (dataset.input)")
      ->type_name("PATH");
  app.add_option_function<std::string>("--out", set("dataset.output"), "The HDF5 file to write (dataset.output)")
      ->type_name("PATH");
  app.add_option_function<std::string>("--tokenizer", set("tokenizer.path"), "Tokenizer file (tokenizer.path)")
      ->type_name("PATH");
  app.add_option_function<std::string>("--sequence-length", set("dataset.sequence_length"),
                                       "Tokens per sequence (dataset.sequence_length)")
      ->type_name("N");
}

int prepare_run(CommandContext& context) {
  std::string output = context.config.get_string("dataset.output");
  if (output.empty()) output = run::RunLayout::for_config(context.config).dataset();
  return run::prepare_stage(context.config, context.runtime, context.config.get_string("dataset.input"), output);
}

}  // namespace metareuse::cli
