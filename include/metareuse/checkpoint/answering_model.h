// A model that answers prompts, with the tokenizer and template it reads them
// through: eval's entries, distill's teacher, the patterns stage's strategist
// and generate all load a model this one way. Its tokenizer and template come
// from resolve_text_format (the given ones, else what the checkpoint was
// trained with or the folder's own); a checkpoint's recorded tokenizer must be
// the one given, and the tokenizer must fit the embedding. Loaded in fp32
// (inference on CPU).
#pragma once

#include <memory>
#include <string>

#include "metareuse/model/llama.h"
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {

struct AnsweringModel {
  std::string description;  // the model source's
  TextFormat text;          // tokenizer file and template, resolved
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModel> model;
};

// `path` a Hugging Face folder or a checkpoint; `tokenizer_path` "" for the
// model's own; `template_name` auto for the model's own.
AnsweringModel load_answering_model(const std::string& path, const std::string& tokenizer_path,
                                    const std::string& template_name);

}  // namespace metareuse
