// The tokenizer and template rule, and the prompt format (prompt_format.h).
#include "metareuse/tokenizer/prompt_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/tokenizer/chat_template.h"

namespace metareuse {
namespace fs = std::filesystem;

nlohmann::json TextFormat::to_json() const { return {{"tokenizer", tokenizer}, {"template", template_name}}; }

TextFormat TextFormat::from_json(const nlohmann::json& tree) {
  TextFormat format;
  if (!tree.is_object()) return format;
  if (tree.contains("tokenizer") && tree["tokenizer"].is_string()) format.tokenizer = tree["tokenizer"];
  if (tree.contains("template") && tree["template"].is_string()) format.template_name = tree["template"];
  return format;
}

std::vector<std::string> tokenizer_files(const std::string& tokenizer_path) {
  std::vector<std::string> files = {tokenizer_path};
  if (fs::path(tokenizer_path).filename() != "tokenizer.json") return files;
  for (const char* companion : {"tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}) {
    const fs::path path = fs::path(tokenizer_path).parent_path() / companion;
    std::error_code error;
    if (fs::is_regular_file(path, error)) files.push_back(path.string());
  }
  return files;
}

namespace {

bool same_folder(const fs::path& a, const fs::path& b) {
  std::error_code error;
  return fs::equivalent(a.empty() ? fs::path(".") : a, b.empty() ? fs::path(".") : b, error) && !error;
}

}  // namespace

TextFormat resolve_text_format(const TextFormat& configured, const ModelText& model) {
  std::error_code error;
  const bool folder = !model.folder.empty() && fs::is_directory(model.folder, error);
  const std::string name = model.name.empty() ? model.folder : model.name;
  TextFormat resolved = configured;

  // The tokenizer.
  std::string own_tokenizer;
  if (model.trained && !model.trained->tokenizer.empty()) {
    own_tokenizer = model.trained->tokenizer;
  } else if (folder) {
    own_tokenizer = model_tokenizer_path(model.folder);
  }
  if (configured.tokenizer.empty()) {
    resolved.tokenizer = own_tokenizer;
  } else if (!own_tokenizer.empty() && configured.tokenizer != own_tokenizer) {
    log_info("tokenizer.path {} as set ({} brings {})", configured.tokenizer, name, own_tokenizer);
  }

  // The template.
  std::string own_template;
  if (model.trained && !model.trained->template_name.empty() && model.trained->template_name != kTemplateAuto) {
    own_template = model.trained->template_name;
  } else if (folder && !resolved.tokenizer.empty() && has_chat_template(model.folder) &&
             same_folder(fs::path(resolved.tokenizer).parent_path(), model.folder)) {
    own_template = "model";
  }
  if (configured.template_name == kTemplateAuto) {
    resolved.template_name = own_template.empty() ? "chat" : own_template;
  } else if (!own_template.empty() && configured.template_name != own_template) {
    if (model.trained) {
      log_warn("tokenizer.template={} as set, but {} was trained with template {}", configured.template_name, name,
                own_template);
    } else {
      log_info("tokenizer.template={} as set ({} has its own chat template, not used)", configured.template_name,
                name);
    }
  }
  return resolved;
}

PromptFormat::PromptFormat(const Tokenizer& tokenizer, const std::string& template_name,
                           const std::string& tokenizer_path)
    : tokenizer_(tokenizer), template_name_(template_name) {
  if (template_name == "model") {
    chat_template_ = std::make_unique<ChatTemplate>(ChatTemplate::load(fs::path(tokenizer_path).parent_path().string()));
    // The token the template puts after a trained answer (its end of turn),
    // when it is a special token: the last one training puts a loss on.
    TokenizedExample probe = training_example("question", "answer");
    for (std::size_t i = probe.ids.size(); i-- > 0;) {
      if (probe.loss_mask[i] == 0) continue;
      const TokenId last = probe.ids[i];
      if (tokenizer.special_id(tokenizer.decode({last})) == last) stop_ids_.push_back(last);
      break;
    }
  } else if (template_name == "chat") {
    if (auto end_of_turn = tokenizer.special_id("<|eot_id|>")) stop_ids_.push_back(*end_of_turn);
  } else if (template_name != "plain") {
    throw InputError(fmt::format("unknown template '{}' (chat, plain or model; auto is resolved before use)",
                                 template_name));
  }
  const TokenId eos = tokenizer.eos_id();
  if (eos >= 0 && std::find(stop_ids_.begin(), stop_ids_.end(), eos) == stop_ids_.end()) stop_ids_.push_back(eos);
}

PromptFormat::PromptFormat(PromptFormat&&) noexcept = default;
PromptFormat::~PromptFormat() = default;

TokenizedExample PromptFormat::training_example(std::string_view prompt, std::string_view target) const {
  if (chat_template_) {
    return chat_template_->tokenize(tokenizer_, {{"user", std::string(prompt), false}, {"assistant", std::string(target), true}},
                                    /*add_generation_prompt=*/false);
  }
  if (template_name_ == "chat") {
    return apply_chat_template(tokenizer_, {{"user", std::string(prompt), false}, {"assistant", std::string(target), true}});
  }
  return apply_plain_template(tokenizer_, prompt, target);
}

std::vector<TokenId> PromptFormat::test_prompt(std::string_view prompt) const {
  if (chat_template_) {
    return chat_template_->tokenize(tokenizer_, {{"user", std::string(prompt), false}}, /*add_generation_prompt=*/true)
        .ids;
  }
  if (template_name_ == "chat") {
    return apply_chat_template(tokenizer_, {{"user", std::string(prompt), false}}, /*add_generation_prompt=*/true).ids;
  }
  // apply_plain_template without the target: bos + prompt (the target follows at the same token boundary).
  std::vector<TokenId> ids;
  if (tokenizer_.bos_id() >= 0) ids.push_back(tokenizer_.bos_id());
  std::vector<TokenId> encoded = tokenizer_.encode(prompt);
  ids.insert(ids.end(), encoded.begin(), encoded.end());
  return ids;
}

}  // namespace metareuse
