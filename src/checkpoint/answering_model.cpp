// Loading a model with its tokenizer and template (answering_model.h).
#include "metareuse/checkpoint/answering_model.h"

#include <fmt/format.h>
#include <torch/torch.h>  // TensorOptions

#include <filesystem>
#include <optional>
#include <vector>

#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/looked_for.h"  // not_found_among
#include "metareuse/tokenizer/chat_template.h"  // model_tokenizer_candidates

namespace metareuse {
namespace fs = std::filesystem;

namespace {

// What a model brings to resolve_text_format (prompt_format.h): a checkpoint
// the tokenizer and template it was trained with (its "text"; for checkpoints
// older than that, its training config's tokenizer keys), a Hugging Face
// folder its own files.
ModelText model_text(const std::string& model_path, const ModelSource& source) {
  ModelText text;
  text.name = model_path;
  if (const auto* checkpoint = dynamic_cast<const CheckpointModelSource*>(&source)) {
    if (std::optional<TextFormat> trained = checkpoint->trained_text()) text.trained = *trained;
    return text;
  }
  text.folder = model_path;
  return text;
}

// A checkpoint records the identity of the tokenizer its dataset was made with.
void check_tokenizer(const Tokenizer& tokenizer, const std::string& tokenizer_path, const ModelSource& source) {
  const auto* checkpoint = dynamic_cast<const CheckpointModelSource*>(&source);
  if (checkpoint == nullptr || !checkpoint->meta().contains("tokenizer") || !checkpoint->meta()["tokenizer"].is_string()) {
    return;
  }
  const std::string trained = checkpoint->meta()["tokenizer"].get<std::string>();
  if (trained != tokenizer.identity()) {
    throw InputError(fmt::format("{} was trained with tokenizer {}, but {} is {}", checkpoint->path(), trained,
                                 tokenizer_path, tokenizer.identity()));
  }
}

}  // namespace

AnsweringModel load_answering_model(const std::string& path, const std::string& tokenizer_path,
                                    const std::string& template_name) {
  AnsweringModel answering;
  auto source = open_model_or_checkpoint(path);
  answering.description = source->description();
  answering.text = resolve_text_format({tokenizer_path, template_name}, model_text(path, *source));
  if (answering.text.tokenizer.empty()) {
    std::error_code error;
    const std::vector<std::string> tried =
        fs::is_directory(path, error) ? model_tokenizer_candidates(path) : std::vector<std::string>{};
    throw UsageError(fmt::format("no tokenizer for model '{}': give --tokenizer (tokenizer.path){}", path,
                                 tried.empty() ? std::string() : " (" + not_found_among("a tokenizer", tried) + ")"));
  }
  answering.tokenizer = load_tokenizer(answering.text.tokenizer);
  check_tokenizer(*answering.tokenizer, answering.text.tokenizer, *source);
  if (answering.tokenizer->vocab_size() > source->config().vocab_size) {
    throw InputError(fmt::format("tokenizer {} has {} tokens but model {} has {} embedding rows",
                                 answering.text.tokenizer, answering.tokenizer->vocab_size(), path,
                                 source->config().vocab_size));
  }
  answering.model = std::make_unique<LlamaModel>(load_model(*source, torch::TensorOptions().dtype(torch::kFloat32)));
  return answering;
}

}  // namespace metareuse
