// metareuse tokenize: text or JSON Lines to token ids with any tokenizer kind,
// or (--train) a sentencepiece tokenizer trained on a corpus. Runs on rank 0;
// `prepare` is the stage that tokenizes in parallel.
#include <fmt/format.h>
#include <nlohmann/json.hpp>  // the ids of --text

#include <iostream>

#include "commands.h"
#include "readable_file.h"  // the check of --input and --train
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/tokenizer/sentencepiece.h"
#include "metareuse/tokenizer/tokenize_file.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse::cli_detail {
namespace {

// The command's own flags (they are not config keys).
struct TokenizeFlags {
  std::string text;
  std::string input;
  std::string out;
  std::string train;
  bool special = false;
  bool strict = false;
};
TokenizeFlags flags;
CLI::Option* text_option = nullptr;  // --text "" is a text, so its presence is counted

int train(CommandContext& context) {
  const Config& config = context.config;
  auto tokenizer = train_sentencepiece_on_corpus(flags.train, config.get_string("tokenizer.path"),
                                                 config.get_int("tokenizer.train_vocab_size"),
                                                 config.get_string("tokenizer.train_model_type"));
  std::cout << tokenizer->identity() << '\n';
  return kExitOk;
}

}  // namespace

void tokenize_options(CLI::App& app, std::vector<std::string>& overrides) {
  app.add_option_function<std::string>(
         "--tokenizer", [&overrides](const std::string& path) { overrides.push_back("tokenizer.path=" + path); },
         "Tokenizer file (tokenizer.json, tiktoken tokenizer.model, sentencepiece .model); with --train, the "
         ".model to write")
      ->type_name("PATH");
  auto* text = text_option = app.add_option("--text", flags.text, "Tokenize this text and print its ids as a JSON array");
  auto* input = app.add_option("--input", flags.input, "JSON Lines with a \"text\" field per record")
                    ->check(readable_file());
  app.add_option("--out", flags.out, "Where --input's records go, each with \"ids\" added");
  auto* train_option = app.add_option("--train", flags.train,
                                      "Train a sentencepiece tokenizer on this corpus (.jsonl: every string field; "
                                      "otherwise plain text lines)")
                           ->check(readable_file());
  app.add_option_function<std::int64_t>(
      "--vocab-size",
      [&overrides](std::int64_t size) { overrides.push_back(fmt::format("tokenizer.train_vocab_size={}", size)); },
      "With --train: the vocabulary size (tokenizer.train_vocab_size)");
  app.add_flag("--special", flags.special,
               "Turn special-token text (<|eot_id|>) into special ids; by default it is ordinary text");
  app.add_flag("--strict", flags.strict, "Exit with status 4 when any input record is bad");
  text->excludes(input)->excludes(train_option);
  input->excludes(train_option);
}

int tokenize_run(CommandContext& context) {
  if (text_option->count() == 0 && flags.input.empty() && flags.train.empty()) {
    throw UsageError("give --text, --input (with --out) or --train");
  }
  if (!flags.input.empty() && flags.out.empty()) throw UsageError("--input needs --out");
  if (context.config.get_string("tokenizer.path").empty()) throw UsageError("--tokenizer PATH is required");
  if (context.runtime.rank() != 0) return kExitOk;
  if (!flags.train.empty()) return train(context);

  auto tokenizer = load_tokenizer(context.config.get_string("tokenizer.path"));
  if (!flags.input.empty()) {
    log_info("tokenizer {} ({})", context.config.get_string("tokenizer.path"), tokenizer->identity());
    TokenizeFileStats stats = tokenize_json_lines(*tokenizer, flags.input, flags.out, flags.special);
    return stats.bad > 0 && flags.strict ? kExitBadRecords : kExitOk;
  }
  // stdout carries only the ids.
  auto ids = flags.special ? tokenizer->encode_with_special(flags.text) : tokenizer->encode(flags.text);
  std::cout << nlohmann::json(ids).dump() << '\n';
  return kExitOk;
}

}  // namespace metareuse::cli_detail
