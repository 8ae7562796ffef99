// metareuse prepare: augmented examples -> the tokenized, packed HDF5 set.
#include <fmt/format.h>

#include "commands.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/tokenizer/tokenizer.h"

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
  if (output.empty()) output = run_folder(context.config) + "/dataset.h5";
  return prepare_execute(context, context.config.get_string("dataset.input"), output);
}

int prepare_execute(CommandContext& context, const std::string& input, const std::string& output) {
  const Config& config = context.config;
  PrepareOptions options;
  options.input = input;
  options.output = output;
  options.template_name = config.get_string("tokenizer.template");
  options.sequence_length = config.get_int("dataset.sequence_length");
  options.pack = config.get_bool("dataset.pack");
  options.patterns_file = config.get_string("dataset.patterns_file");
  options.config_json = config.dump();
  if (options.input.empty()) throw UsageError("give the augmented examples with --input (dataset.input)");
  if (config.get_string("tokenizer.path").empty()) throw UsageError("give the tokenizer with --tokenizer (tokenizer.path)");

  Stopwatch watch;
  auto tokenizer = load_tokenizer(config.get_string("tokenizer.path"));
  PrepareReport report = prepare_dataset(options, *tokenizer, context.runtime.world());
  const DatasetMetadata& metadata = report.metadata;
  log::info("prepared {}: {} record(s) ({} bad), {} document(s) ({} longer than {} tokens dropped), {} tokens in {} "
            "sequence(s), packing efficiency {:.1f}%, {:.2f} s on {} rank(s)",
            options.output, report.records, report.bad_records, metadata.documents, metadata.dropped_documents,
            options.sequence_length, metadata.real_tokens, report.sequences, 100.0 * metadata.packing_efficiency,
            watch.seconds(), context.runtime.world_size());
  if (report.records == report.bad_records) {
    throw InputError(fmt::format("{}: no usable records (each needs string fields \"prompt\" and \"target\")",
                                 options.input));
  }
  return kExitOk;
}

}  // namespace metareuse::cli
