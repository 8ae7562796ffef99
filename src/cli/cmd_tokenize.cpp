// metareuse tokenize: text or JSON Lines to token ids with any tokenizer kind,
// or (--train) a sentencepiece tokenizer trained on a corpus. Runs on rank 0;
// `prepare` is the stage that tokenizes in parallel.
#include <fmt/format.h>
#include <nlohmann/json.hpp>  // ordered_json keeps each record's key order

#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/tokenizer/sentencepiece.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse::cli {
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

constexpr int kMaxReportedBadRecords = 10;

std::vector<TokenId> encode(const Tokenizer& tokenizer, const std::string& text) {
  return flags.special ? tokenizer.encode_with_special(text) : tokenizer.encode(text);
}

int tokenize_file(const Tokenizer& tokenizer) {
  std::ifstream in(flags.input, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open input", flags.input));
  if (auto parent = std::filesystem::path(flags.out).parent_path(); !parent.empty()) {
    std::filesystem::create_directories(parent);
  }
  std::ofstream out(flags.out, std::ios::binary);
  if (!out) throw InputError(fmt::format("{}: cannot open output", flags.out));
  Stopwatch watch;
  std::string line;
  std::int64_t line_number = 0, good = 0, bad = 0, tokens = 0, bytes = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      auto record = nlohmann::ordered_json::parse(line);
      if (!record.is_object()) throw InputError("the line is not a JSON object");
      auto text = record.find("text");
      if (text == record.end() || !text->is_string()) throw InputError("no string field \"text\"");
      const std::string& content = text->get_ref<const std::string&>();
      auto ids = encode(tokenizer, content);
      tokens += static_cast<std::int64_t>(ids.size());
      bytes += static_cast<std::int64_t>(content.size());
      record["ids"] = std::move(ids);
      out << record.dump() << '\n';
      ++good;
    } catch (const std::exception& e) {
      // Bad records are reported and skipped; the good ones are still written.
      if (++bad <= kMaxReportedBadRecords) log::warn("{}:{}: skipped: {}", flags.input, line_number, e.what());
    }
  }
  out.close();
  if (!out) throw Error(fmt::format("{}: write failed", flags.out));
  double seconds = watch.seconds();
  log::info("tokenized {} record(s) ({} bytes, {} tokens) in {:.2f} s ({:.1f} MB/s) into {}; {} bad record(s)", good,
            bytes, tokens, seconds, seconds > 0 ? bytes / seconds / 1e6 : 0.0, flags.out, bad);
  if (bad > 0 && flags.strict) return kExitBadRecords;
  return kExitOk;
}

// Writes the training text of a corpus: each string field of each JSON Lines
// record (or, for any other file, the file as it is) as lines of text.
std::string write_training_text(const std::string& corpus, const std::filesystem::path& text_file) {
  std::ifstream in(corpus, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open corpus", corpus));
  std::ofstream out(text_file, std::ios::binary);
  bool json_lines = std::filesystem::path(corpus).extension() == ".jsonl";
  std::string line;
  std::int64_t line_number = 0, records = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!json_lines) {
      out << line << '\n';
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      log::warn("{}:{}: skipped: {}", corpus, line_number, e.what());
      continue;
    }
    if (!record.is_object()) continue;
    for (const auto& [key, value] : record.items()) {
      if (value.is_string()) out << value.get<std::string>() << '\n';
    }
    ++records;
  }
  if (json_lines && records == 0) throw InputError(fmt::format("{}: no JSON records to train on", corpus));
  return text_file.string();
}

int train(CommandContext& context) {
  std::string model = context.config.get_string("tokenizer.path");
  auto tokenizer = train_tokenizer(context, flags.train, model);
  std::cout << tokenizer->identity() << '\n';
  return kExitOk;
}

}  // namespace

std::unique_ptr<Tokenizer> train_tokenizer(CommandContext& context, const std::string& corpus, const std::string& model) {
  if (model.size() < 7 || model.substr(model.size() - 6) != ".model") {
    throw UsageError(fmt::format("--train writes the model to --tokenizer, which must end in .model (got '{}')", model));
  }
  std::filesystem::path prefix = model.substr(0, model.size() - 6);
  if (prefix.has_parent_path()) std::filesystem::create_directories(prefix.parent_path());
  std::filesystem::path text_file = prefix.string() + ".train.txt";
  SentencePieceTrainOptions options;
  options.input_file = write_training_text(corpus, text_file);
  options.model_prefix = prefix.string();
  options.vocab_size = context.config.get_int("tokenizer.train_vocab_size");
  options.model_type = context.config.get_string("tokenizer.train_model_type");
  Stopwatch watch;
  train_sentencepiece(options);
  std::filesystem::remove(text_file);
  auto tokenizer = load_tokenizer(model);
  log::info("trained a sentencepiece {} tokenizer ({} pieces) on {} in {:.1f} s: {}", options.model_type,
            tokenizer->vocab_size(), corpus, watch.seconds(), model);
  return tokenizer;
}

void tokenize_options(CLI::App& app, std::vector<std::string>& overrides) {
  app.add_option_function<std::string>(
         "--tokenizer", [&overrides](const std::string& path) { overrides.push_back("tokenizer.path=" + path); },
         "Tokenizer file (tokenizer.json, tiktoken tokenizer.model, sentencepiece .model); with --train, the "
         ".model to write")
      ->type_name("PATH");
  auto* text = text_option = app.add_option("--text", flags.text, "Tokenize this text and print its ids as a JSON array");
  auto* input = app.add_option("--input", flags.input, "JSON Lines with a \"text\" field per record")
                    ->check(CLI::ExistingFile);
  app.add_option("--out", flags.out, "Where --input's records go, each with \"ids\" added");
  auto* train_option = app.add_option("--train", flags.train,
                                      "Train a sentencepiece tokenizer on this corpus (.jsonl: every string field; "
                                      "otherwise plain text lines)")
                           ->check(CLI::ExistingFile);
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
    log::info("tokenizer {} ({})", context.config.get_string("tokenizer.path"), tokenizer->identity());
    return tokenize_file(*tokenizer);
  }
  // stdout carries only the ids.
  std::cout << nlohmann::json(encode(*tokenizer, flags.text)).dump() << '\n';
  return kExitOk;
}

}  // namespace metareuse::cli
