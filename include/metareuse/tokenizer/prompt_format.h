// How text meets a model: which tokenizer and template a run, a dataset
// and an eval use, and the one rule that turns a (prompt, target) pair into a
// training sequence and a prompt into the ids a model answers.
//
// Templates (tokenizer.template):
//   chat   Llama 3's instruct headers (apply_chat_template in tokenizer.h);
//   plain  bos + prompt + target + eos (base models, sentencepiece);
//   model  the chat template saved with the tokenizer: tokenizer_config.json
//          (or chat_template.jinja) in tokenizer.path's folder, as a Hugging
//          Face model folder holds them (ChatTemplate, chat_template.h);
//   auto   not chosen: resolve_text_format() picks one.
//
// The rule of resolve_text_format(), the only place it is decided:
//   1. A value the user set wins (tokenizer.path not empty, tokenizer.template
//      not auto). Where the model brings another, that is logged.
//   2. Else what the model brings. A checkpoint: the tokenizer and template it
//      was trained with (recorded in its metadata, TextFormat::to_json). A
//      Hugging Face folder: its tokenizer.json, and the template "model" when
//      the tokenizer in use sits in that folder and the folder has a chat template.
//   3. Else tokenizer "" (the caller trains one or asks for --tokenizer) and template chat.
#pragma once

#include <nlohmann/json.hpp>  // TextFormat's JSON form (checkpoint metadata)

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {

class ChatTemplate;

inline constexpr const char* kTemplateAuto = "auto";

// A tokenizer file and a template name (chat, plain, model; auto before resolution).
struct TextFormat {
  std::string tokenizer;
  std::string template_name = kTemplateAuto;

  nlohmann::json to_json() const;
  // {"tokenizer": ..., "template": ...}; a missing field keeps its default.
  static TextFormat from_json(const nlohmann::json& tree);
};

// What a model brings: its Hugging Face folder ("" for none) and, for a
// checkpoint, the format it was trained with.
struct ModelText {
  std::string folder;
  std::optional<TextFormat> trained;
  std::string name;  // how log lines name the model
};

// The rule above. `configured` is tokenizer.path and tokenizer.template as the
// config holds them.
TextFormat resolve_text_format(const TextFormat& configured, const ModelText& model);

// The files that make up a tokenizer on disk: `tokenizer_path` and, for a
// Hugging Face tokenizer.json, those of tokenizer_config.json,
// special_tokens_map.json and chat_template.jinja that sit beside it (what
// export copies, so the exported folder keeps its template and transformers
// loads its tokenizer).
std::vector<std::string> tokenizer_files(const std::string& tokenizer_path);

class PromptFormat {
 public:
  // `template_name` chat, plain or model (model reads the template in
  // `tokenizer_path`'s folder). auto or any other name is an InputError.
  // The tokenizer must outlive the format.
  PromptFormat(const Tokenizer& tokenizer, const std::string& template_name, const std::string& tokenizer_path);
  PromptFormat(PromptFormat&&) noexcept;
  ~PromptFormat();

  // A training sequence: loss mask 1 on the target and the token that ends it.
  TokenizedExample training_example(std::string_view prompt, std::string_view target) const;
  // The ids a model answers: training_example(prompt, target)'s ids up to the
  // target (the tests check that it is their prefix).
  std::vector<TokenId> test_prompt(std::string_view prompt) const;
  // Tokens that end an answer: what training puts after the target, and the eos.
  const std::vector<TokenId>& stop_ids() const { return stop_ids_; }
  const std::string& template_name() const { return template_name_; }

 private:
  const Tokenizer& tokenizer_;
  std::string template_name_;
  std::unique_ptr<ChatTemplate> chat_template_;  // model
  std::vector<TokenId> stop_ids_;
};

}  // namespace metareuse
