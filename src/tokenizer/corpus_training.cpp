// A sentencepiece tokenizer trained on a corpus file (for from-scratch models).
#include <fmt/format.h>
#include <nlohmann/json.hpp>  // JSON Lines records

#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/tokenizer/sentencepiece.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
namespace {

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

}  // namespace

std::unique_ptr<Tokenizer> train_sentencepiece_on_corpus(const std::string& corpus, const std::string& model,
                                                         std::int64_t vocab_size, const std::string& model_type) {
  if (model.size() < 7 || model.substr(model.size() - 6) != ".model") {
    throw UsageError(fmt::format("--train writes the model to --tokenizer, which must end in .model (got '{}')", model));
  }
  std::filesystem::path prefix = model.substr(0, model.size() - 6);
  if (prefix.has_parent_path()) std::filesystem::create_directories(prefix.parent_path());
  std::filesystem::path text_file = prefix.string() + ".train.txt";
  SentencePieceTrainOptions options;
  options.input_file = write_training_text(corpus, text_file);
  options.model_prefix = prefix.string();
  options.vocab_size = vocab_size;
  options.model_type = model_type;
  Stopwatch watch;
  train_sentencepiece(options);
  std::filesystem::remove(text_file);
  auto tokenizer = load_tokenizer(model);
  log::info("trained a sentencepiece {} tokenizer ({} pieces) on {} in {:.1f} s: {}", options.model_type,
            tokenizer->vocab_size(), corpus, watch.seconds(), model);
  return tokenizer;
}

}  // namespace metareuse
