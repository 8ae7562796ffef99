// The Jinja subset that Hugging Face chat templates use, parsed and rendered
// by hand: no C++ Jinja is packaged for Debian 12 (chat_template.h lists the
// subset and how it is checked against Python's jinja2). Private to
// src/tokenizer: ChatTemplate is the module's interface to it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "metareuse/tokenizer/chat_template.h"  // ChatMessage, RenderedChat

namespace metareuse::tokenizer_detail {

class JinjaTemplate {
 public:
  JinjaTemplate();
  // Parses `source`; a construct outside the subset is an InputError naming
  // `where` (the template's file) and the construct.
  JinjaTemplate(const std::string& source, const std::string& where);
  JinjaTemplate(JinjaTemplate&&) noexcept;
  JinjaTemplate& operator=(JinjaTemplate&&) noexcept;
  ~JinjaTemplate();

  // Renders with the globals apply_chat_template passes: messages (content
  // marked i + 1 in RenderedChat::origin, the role -1), add_generation_prompt,
  // bos_token and eos_token.
  RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                      const std::string& bos_token, const std::string& eos_token) const;

 private:
  struct Parsed;
  std::string where_;
  std::unique_ptr<Parsed> parsed_;
};

}  // namespace metareuse::tokenizer_detail
