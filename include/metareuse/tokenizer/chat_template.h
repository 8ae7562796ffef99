// A model's own chat template: the Jinja template of its tokenizer_config.json
// (or chat_template.jinja next to it), rendered as transformers'
// apply_chat_template renders it, then tokenized so that message text never
// becomes special tokens.
//
// Jinja is a language, and no C++ implementation is packaged for Debian 12
// (apt-cache search jinja lists only Python, Rust and R ones), so
// src/tokenizer/jinja.cpp interprets by hand the subset chat templates
// use: text, {{ }}, {% set / if / elif / else / for %}, comments, whitespace
// control and transformers' trim_blocks + lstrip_blocks; expressions with
// literals, names, ['key'] and .attribute, loop.*, + ~ == != < > <= >= in,
// and / or / not, `is defined`, filters (trim, length, lower, upper) and
// raise_exception(). Anything else is an InputError naming the template file
// and the construct. A template is untrusted input: nesting, string and list
// sizes and loop iterations are bounded (src/tokenizer/jinja_syntax.h). tests/test_real.cpp checks it against Python's jinja2
// through apply_chat_template (Llama 3's and SmolLM2's templates, 20
// conversations each).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {

// The rendered text, and where each byte came from: 0 for the template itself
// (its literals, bos_token, ...), i + 1 for message i's content, -1 for
// message i's other fields (the role).
struct RenderedChat {
  std::string text;
  std::vector<int> origin;  // one per byte of text
};

class ChatTemplate {
 public:
  // Reads `folder`/tokenizer_config.json ("chat_template", "bos_token",
  // "eos_token") or, where the template is not there, `folder`/chat_template.jinja
  // (transformers 5's save_pretrained), and the special-token texts of
  // `folder`/tokenizer.json ("added_tokens"). Throws InputError naming the file
  // when there is no template or it does not parse.
  static ChatTemplate load(const std::string& folder);
  // From the template text itself; `where` names it in errors.
  static ChatTemplate parse(const std::string& source, const std::string& where, std::string bos_token,
                            std::string eos_token, std::vector<std::string> special_texts);

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // What apply_chat_template(messages, tokenize=False, add_generation_prompt)
  // returns. Message content is used as given (a template may trim it).
  RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // The rendered text tokenized: special-token texts that come from the
  // template become their ids; message text is ordinary text, even where it
  // spells a special token. Between special tokens the text is encoded whole,
  // so the ids are those of apply_chat_template(tokenize=True) whenever the
  // messages spell no special token. Loss mask 1 on the tokens of messages
  // marked train and on the template token that follows each (the end of turn).
  TokenizedExample tokenize(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt) const;

  const std::string& where() const;

 private:
  struct Program;
  explicit ChatTemplate(std::unique_ptr<Program> program);
  std::unique_ptr<Program> program_;
};

// True when `folder` holds a chat template for ChatTemplate::load: a
// tokenizer_config.json with "chat_template", or chat_template.jinja beside it.
bool has_chat_template(const std::string& folder);

// Where a model folder's own tokenizer may be, in the order they are tried:
// `folder`/tokenizer.json, tokenizer.model, spm.model.
std::vector<std::string> model_tokenizer_candidates(const std::string& folder);
// A model folder's own tokenizer: the first of model_tokenizer_candidates that is there, else "".
std::string model_tokenizer_path(const std::string& folder);

}  // namespace metareuse
