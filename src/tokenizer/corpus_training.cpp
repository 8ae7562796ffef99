// A sentencepiece tokenizer trained on a corpus file (for from-scratch models).
#include <fmt/format.h>
#include <nlohmann/json.hpp>  // JSON Lines records

#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/timing.h"
#include "metareuse/tokenizer/sentencepiece.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
namespace {

// Writes the training text of a corpus: each string field of each JSON Lines
// record (or, for any other file, the file as it is) as lines of text.
void write_training_text(const std::string& corpus, AtomicFile& out) {
  std::ifstream in(corpus, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open corpus: {}", corpus, why_unreadable(corpus)));
  bool json_lines = std::filesystem::path(corpus).extension() == ".jsonl";
  std::string line;
  std::int64_t line_number = 0, records = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!json_lines) {
      out.write(line + '\n');
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      log_warn("{}:{}: skipped: {}", corpus, line_number, e.what());
      continue;
    }
    if (!record.is_object()) continue;
    for (const auto& [key, value] : record.items()) {
      if (value.is_string()) out.write(value.get<std::string>() + '\n');
    }
    ++records;
  }
  if (json_lines && records == 0) throw InputError(fmt::format("{}: no JSON records to train on", corpus));
  out.close_keep();
}

}  // namespace

std::unique_ptr<Tokenizer> train_sentencepiece_on_corpus(const std::string& corpus, const std::string& model,
                                                         std::int64_t vocab_size, const std::string& model_type) {
  if (model.size() < 7 || model.substr(model.size() - 6) != ".model") {
    throw UsageError(fmt::format("--train writes the model to --tokenizer, which must end in .model (got '{}')", model));
  }
  std::filesystem::path prefix = model.substr(0, model.size() - 6);
  // The training text, <prefix>.train.txt: every write checked; removed
  // when this function leaves, whether training succeeded or not.
  AtomicFile text_file(prefix.string(), ".train.txt");
  write_training_text(corpus, text_file);
  SentencePieceTrainOptions options;
  options.input_file = text_file.temporary();
  options.model_prefix = prefix.string();
  options.vocab_size = vocab_size;
  options.model_type = model_type;
  Stopwatch watch;
  train_sentencepiece(options);
  auto tokenizer = load_tokenizer(model);
  log_info("trained a sentencepiece {} tokenizer ({} pieces) on {} in {:.1f} s: {}", options.model_type,
            tokenizer->vocab_size(), corpus, watch.seconds(), model);
  return tokenizer;
}

}  // namespace metareuse
