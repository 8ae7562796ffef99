// Chat and plain templates: the only place special tokens enter a sequence.
#include <fmt/format.h>

#include "metareuse/core/error.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "metareuse/core/text.h"

namespace metareuse {
namespace {


void append(TokenizedExample& example, TokenId id, bool train) {
  example.ids.push_back(id);
  example.loss_mask.push_back(train ? 1 : 0);
}

void append(TokenizedExample& example, const std::vector<TokenId>& ids, bool train) {
  example.ids.insert(example.ids.end(), ids.begin(), ids.end());
  example.loss_mask.insert(example.loss_mask.end(), ids.size(), train ? 1 : 0);
}

TokenId required_special(const Tokenizer& tokenizer, const char* text) {
  auto id = tokenizer.special_id(text);
  if (!id) {
    throw InputError(fmt::format("the chat template needs the special token {}, which this {} tokenizer does not have",
                                 text, tokenizer_kind_name(tokenizer.kind())));
  }
  return *id;
}

}  // namespace

TokenizedExample apply_chat_template(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) {
  const TokenId begin_of_text = required_special(tokenizer, "<|begin_of_text|>");
  const TokenId start_header = required_special(tokenizer, "<|start_header_id|>");
  const TokenId end_header = required_special(tokenizer, "<|end_header_id|>");
  const TokenId end_of_turn = required_special(tokenizer, "<|eot_id|>");
  TokenizedExample example;
  append(example, begin_of_text, false);
  for (const ChatMessage& message : messages) {
    append(example, start_header, false);
    append(example, tokenizer.encode(message.role), false);
    append(example, end_header, false);
    // "\n\n" is always its own pre-token before trimmed content, so encoding
    // it apart from the content gives the same ids as the joined string (the
    // tests check this against encode_with_special of the rendered text).
    append(example, tokenizer.encode("\n\n"), false);
    append(example, tokenizer.encode(trim_ascii(message.content)), message.train);
    append(example, end_of_turn, message.train);
  }
  if (add_generation_prompt) {
    append(example, start_header, false);
    append(example, tokenizer.encode("assistant"), false);
    append(example, end_header, false);
    append(example, tokenizer.encode("\n\n"), false);
  }
  return example;
}

TokenizedExample apply_plain_template(const Tokenizer& tokenizer, std::string_view prompt, std::string_view target) {
  TokenizedExample example;
  if (tokenizer.bos_id() >= 0) append(example, tokenizer.bos_id(), false);
  append(example, tokenizer.encode(prompt), false);
  append(example, tokenizer.encode(target), true);
  if (tokenizer.eos_id() < 0) {
    throw InputError(fmt::format("the plain template needs an end-of-sequence token, which this {} tokenizer lacks",
                                 tokenizer_kind_name(tokenizer.kind())));
  }
  append(example, tokenizer.eos_id(), true);
  return example;
}

}  // namespace metareuse
