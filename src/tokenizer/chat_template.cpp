// ChatTemplate: a model folder's chat template (tokenizer_config.json or
// chat_template.jinja), rendered by the Jinja subset of jinja.h and tokenized
// so that message text never becomes special tokens, with the loss mask of
// the trained messages.
#include "metareuse/tokenizer/chat_template.h"

#include <fmt/format.h>       // messages
#include <nlohmann/json.hpp>  // tokenizer_config.json, tokenizer.json

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "jinja.h"
#include "metareuse/core/error.h"
#include "metareuse/core/json_input.h"  // model-folder JSON, depth-bounded
#include "metareuse/core/looked_for.h"

namespace metareuse {

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot open '{}': {}", path.string(), why_unreadable(path.string())));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::json read_json(const std::filesystem::path& path) {
  try {
    return parse_json_input(path.string(), read_text(path));
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  }
}

std::string token_text(const nlohmann::json& config, const char* key, const std::filesystem::path& path) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  throw InputError(fmt::format("{}: key '{}' must be a string or an object with 'content'", path.string(), key));
}

}  // namespace

struct ChatTemplate::Program {
  std::string where;
  tokenizer_detail::JinjaTemplate body;
  std::string bos_token;
  std::string eos_token;
  std::vector<std::string> special_texts;  // longest first
};

ChatTemplate::ChatTemplate(std::unique_ptr<Program> program) : program_(std::move(program)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

const std::string& ChatTemplate::where() const { return program_->where; }

ChatTemplate ChatTemplate::parse(const std::string& source, const std::string& where, std::string bos_token,
                                 std::string eos_token, std::vector<std::string> special_texts) {
  auto program = std::make_unique<Program>();
  program->where = where;
  program->body = tokenizer_detail::JinjaTemplate(source, where);
  program->bos_token = std::move(bos_token);
  program->eos_token = std::move(eos_token);
  std::sort(special_texts.begin(), special_texts.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  special_texts.erase(std::remove(special_texts.begin(), special_texts.end(), std::string()), special_texts.end());
  program->special_texts = std::move(special_texts);
  return ChatTemplate(std::move(program));
}

ChatTemplate ChatTemplate::load(const std::string& folder) {
  namespace fs = std::filesystem;
  const fs::path config_path = fs::path(folder) / "tokenizer_config.json";
  if (!fs::exists(config_path)) throw InputError(fmt::format("{}: no tokenizer_config.json (the chat template's home; looked for {})",
                                                            folder, absolute_text(config_path.string())));
  nlohmann::json config = read_json(config_path);
  std::string source;
  std::string where = config_path.string();
  auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) {
    source = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {
    // Named templates: [{"name": "default", "template": ...}, ...].
    for (const auto& entry : *it) {
      if (entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string()) {
        source = entry["template"].get<std::string>();
      }
    }
    if (source.empty()) throw InputError(fmt::format("{}: key 'chat_template' has no template named 'default'", where));
  } else if (fs::exists(fs::path(folder) / "chat_template.jinja")) {
    where = (fs::path(folder) / "chat_template.jinja").string();
    source = read_text(where);
  } else {
    throw InputError(fmt::format("{}: no key 'chat_template' and no chat_template.jinja next to it", where));
  }
  std::vector<std::string> specials;
  const fs::path tokenizer_path = fs::path(folder) / "tokenizer.json";
  if (fs::exists(tokenizer_path)) {
    nlohmann::json tokenizer = read_json(tokenizer_path);
    for (const auto& added : tokenizer.value("added_tokens", nlohmann::json::array())) {
      if (added.contains("content") && added["content"].is_string()) specials.push_back(added["content"].get<std::string>());
    }
  }
  return parse(source, where, token_text(config, "bos_token", config_path), token_text(config, "eos_token", config_path),
               std::move(specials));
}

bool has_chat_template(const std::string& folder) {
  namespace fs = std::filesystem;
  if (folder.empty()) return false;
  std::error_code error;
  if (fs::is_regular_file(fs::path(folder) / "chat_template.jinja", error)) return true;
  std::ifstream in(fs::path(folder) / "tokenizer_config.json");
  if (!in) return false;
  // Not read_json: a folder whose tokenizer_config.json does not parse simply has no template here;
  // ChatTemplate::load reports the file when it is asked to load one.
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.contains("chat_template") && !config["chat_template"].is_null();
}

std::vector<std::string> model_tokenizer_candidates(const std::string& folder) {
  // tokenizer.json (Hugging Face), tokenizer.model (Meta's tiktoken, or the
  // sentencepiece a from-scratch run trains), spm.model: export copies the
  // tokenizer under its own name.
  std::vector<std::string> candidates;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "spm.model"}) {
    candidates.push_back((std::filesystem::path(folder) / name).string());
  }
  return candidates;
}

std::string model_tokenizer_path(const std::string& folder) {
  for (const std::string& path : model_tokenizer_candidates(folder)) {
    std::error_code error;
    if (std::filesystem::is_regular_file(path, error)) return path;
  }
  return std::string();
}

RenderedChat ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return program_->body.render(messages, add_generation_prompt, program_->bos_token, program_->eos_token);
}

TokenizedExample ChatTemplate::tokenize(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  const RenderedChat chat = render(messages, add_generation_prompt);
  TokenizedExample example;
  bool trained_turn_open = false;  // a trained message's text was seen; its end-of-turn token is trained too
  auto trained = [&](int origin) { return origin > 0 && messages[static_cast<std::size_t>(origin - 1)].train; };
  auto flush = [&](std::size_t begin, std::size_t end) {
    if (begin >= end) return;
    std::vector<TokenId> ids = tokenizer.encode(std::string_view(chat.text).substr(begin, end - begin));
    std::size_t offset = begin;
    for (TokenId id : ids) {
      const std::size_t length = tokenizer.decode_bytes({id}).size();
      bool train = false;
      for (std::size_t k = offset; k < std::min(offset + length, end); ++k) {
        if (trained(chat.origin[k])) train = true;
        if (chat.origin[k] > 0) trained_turn_open = trained(chat.origin[k]);
      }
      example.ids.push_back(id);
      example.loss_mask.push_back(train ? 1 : 0);
      offset += length;
    }
  };
  std::size_t start = 0;
  std::size_t position = 0;
  while (position < chat.text.size()) {
    const std::string* match = nullptr;
    if (chat.origin[position] == 0) {
      for (const std::string& special : program_->special_texts) {
        if (chat.text.compare(position, special.size(), special) != 0) continue;
        // All of it from the template: message text never becomes a special token.
        bool from_template = std::all_of(chat.origin.begin() + static_cast<std::ptrdiff_t>(position),
                                         chat.origin.begin() + static_cast<std::ptrdiff_t>(position + special.size()),
                                         [](int origin) { return origin == 0; });
        if (from_template && tokenizer.special_id(special)) {
          match = &special;
          break;
        }
      }
    }
    if (match == nullptr) {
      ++position;
      continue;
    }
    flush(start, position);
    example.ids.push_back(*tokenizer.special_id(*match));
    example.loss_mask.push_back(trained_turn_open ? 1 : 0);
    trained_turn_open = false;
    position += match->size();
    start = position;
  }
  flush(start, chat.text.size());
  return example;
}

}  // namespace metareuse
