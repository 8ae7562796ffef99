// Reading tokenizer files: kind detection, Hugging Face tokenizer.json, and
// Meta's tiktoken tokenizer.model. Sentencepiece models are read in
// (sentencepiece.cpp).
#include <fmt/format.h>
#include <nlohmann/json.hpp>  // tokenizer.json
#include <xxhash.h>           // XXH3_64bits, the file hash

#include <filesystem>
#include <fstream>
#include <sstream>

#include "byte_level_bpe.h"
#include "metareuse/core/error.h"
#include "metareuse/core/json_input.h"  // model-folder JSON, depth-bounded
#include "metareuse/core/looked_for.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "sentencepiece_tokenizer.h"

namespace metareuse {

using tokenizer_detail::BpeModel;
using tokenizer_detail::ByteLevelBpeTokenizer;
using tokenizer_detail::pair_key;

const char* tokenizer_kind_name(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kHuggingFaceJson: return "tokenizer.json";
    case TokenizerKind::kTiktoken: return "tiktoken";
    case TokenizerKind::kSentencePiece: return "sentencepiece";
  }
  return "unknown";
}

std::string Tokenizer::identity() const {
  return fmt::format("{}:{}:{}", tokenizer_kind_name(kind()), vocab_size(), file_hash_);
}

namespace {

// The largest token id a tokenizer.json may hold (vocab or added token): ten
// times the largest vocabulary in use, small enough that a table sized by it
// (the vocabulary here, the embedding in the model) stays in memory.
constexpr std::int64_t kMaxTokenId = 10000000;

std::string read_file(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw InputError(fmt::format("tokenizer '{}' is a directory; give the tokenizer file in it (tokenizer.json, "
                                 "tokenizer.model or a sentencepiece .model)",
                                 path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open tokenizer file: {}", path, why_unreadable(path)));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string hash_hex(const std::string& content) {
  return fmt::format("{:016x}", static_cast<unsigned long long>(XXH3_64bits(content.data(), content.size())));
}

// GPT-2's byte-to-unicode table, inverted: tokenizer.json spells each byte as
// one printable code point (bytes that are printable Latin-1 as themselves, the
// others as U+0100 + n in byte order).
std::vector<int> unicode_to_byte_table() {
  std::vector<int> table(512, -1);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    if (direct[b]) {
      table[b] = b;
    } else {
      table[next++] = b;
    }
  }
  return table;
}

// Decodes one token string of tokenizer.json into the bytes it stands for.
bool byte_level_to_bytes(const std::string& token, const std::vector<int>& table, std::string& bytes) {
  bytes.clear();
  for (std::size_t i = 0; i < token.size();) {
    unsigned char lead = static_cast<unsigned char>(token[i]);
    std::uint32_t code_point;
    std::size_t length;
    if (lead < 0x80) {
      code_point = lead;
      length = 1;
    } else if ((lead & 0xE0) == 0xC0) {
      code_point = lead & 0x1F;
      length = 2;
    } else {
      return false;  // the table only reaches U+0143, two UTF-8 bytes
    }
    if (i + length > token.size()) return false;
    for (std::size_t k = 1; k < length; ++k) code_point = (code_point << 6) | (token[i + k] & 0x3F);
    if (code_point >= table.size() || table[code_point] < 0) return false;
    bytes.push_back(static_cast<char>(table[code_point]));
    i += length;
  }
  return true;
}

[[noreturn]] void bad_json(const std::string& path, const std::string& what) {
  throw InputError(fmt::format("{}: not a usable byte-level BPE tokenizer.json: {}", path, what));
}

// The regex of the pre-tokenizer. Two layouts are understood:
//   Llama 3: Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)];
//   GPT-2 style (SmolLM2): ByteLevel(use_regex=true, add_prefix_space=false),
//   whose built-in regex is kGpt2Pattern.
// Anything else is refused by name.
std::string read_pre_tokenizer_pattern(const std::string& path, const nlohmann::json& root) {
  auto found = root.find("pre_tokenizer");
  if (found == root.end() || found->is_null()) bad_json(path, "key 'pre_tokenizer' is missing");
  std::vector<nlohmann::json> steps;
  if (found->value("type", "") == "Sequence") {
    for (const auto& step : found->value("pretokenizers", nlohmann::json::array())) steps.push_back(step);
  } else {
    steps.push_back(*found);
  }
  std::string pattern;
  bool byte_level = false;
  bool byte_level_regex = false;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& step = steps[i];
    std::string type = step.value("type", "");
    if (type == "Split") {
      if (!step.contains("pattern") || !step["pattern"].contains("Regex") || !step["pattern"]["Regex"].is_string()) {
        bad_json(path, fmt::format("pre_tokenizer step {} (Split) has no 'pattern.Regex' string", i));
      }
      if (step.value("behavior", "") != "Isolated" || step.value("invert", false)) {
        bad_json(path, fmt::format("pre_tokenizer step {} (Split): only behavior 'Isolated' without invert is supported",
                                   i));
      }
      if (!pattern.empty()) bad_json(path, "pre_tokenizer has more than one Split step");
      pattern = step["pattern"]["Regex"].get<std::string>();
    } else if (type == "ByteLevel") {
      if (step.value("add_prefix_space", false)) {
        bad_json(path, fmt::format("pre_tokenizer step {} (ByteLevel): add_prefix_space=true is not supported", i));
      }
      byte_level_regex = step.value("use_regex", true);
      byte_level = true;
    } else {
      bad_json(path, fmt::format("pre_tokenizer step {} has unsupported type '{}'", i, type));
    }
  }
  if (!byte_level) bad_json(path, "pre_tokenizer has no ByteLevel step");
  if (byte_level_regex) {
    if (!pattern.empty()) {
      bad_json(path, "pre_tokenizer has both a Split regex and ByteLevel's own regex (use_regex=true)");
    }
    return tokenizer_detail::kGpt2Pattern;
  }
  if (pattern.empty()) bad_json(path, "pre_tokenizer has no Split regex and ByteLevel has use_regex=false");
  return pattern;
}

// tokenizer_config.json next to tokenizer.json names the sequence start and end
// tokens ("bos_token": "<|im_start|>", or {"content": ...}); without it, or
// without the key, Llama 3's names stay.
void read_sequence_tokens(const std::string& path, BpeModel& bpe) {
  std::filesystem::path config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::ifstream in(config_path);
  if (!in) return;
  nlohmann::json config;
  try {
    config = parse_json_input(config_path.string(), in);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", config_path.string(), e.what()));
  }
  auto read = [&](const char* key, std::string& out) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return;
    if (it->is_string()) {
      out = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      out = (*it)["content"].get<std::string>();
    } else {
      throw InputError(fmt::format("{}: key '{}' must be a string or an object with 'content'", config_path.string(),
                                   key));
    }
  };
  read("bos_token", bpe.bos_token);
  read("eos_token", bpe.eos_token);
}

std::unique_ptr<Tokenizer> load_huggingface_json(const std::string& path, const std::string& content) {
  nlohmann::json root;
  try {
    root = parse_json_input(path, content);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: tokenizer.json is not valid JSON: {}", path, e.what()));
  }
  if (!root.is_object()) bad_json(path, "the top level is not an object");
  if (!root.contains("model") || !root["model"].is_object()) bad_json(path, "key 'model' is missing");
  const auto& model = root["model"];
  std::string type = model.value("type", "");
  if (type != "BPE") {
    bad_json(path, fmt::format("key 'model.type' is '{}', expected 'BPE' (for a sentencepiece tokenizer pass its "
                               ".model file)", type));
  }
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    bad_json(path, "key 'normalizer' is set; Llama 3 has none and normalizers are not supported");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) bad_json(path, "key 'model.vocab' is missing");
  if (!model.contains("merges") || !model["merges"].is_array()) bad_json(path, "key 'model.merges' is missing");
  for (const char* unsupported : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    // null or "" (what save_pretrained writes for a byte-level BPE) mean none.
    if (model.contains(unsupported) && !model[unsupported].is_null() && model[unsupported] != "") {
      bad_json(path, fmt::format("key 'model.{}' is set; it is not supported", unsupported));
    }
  }

  BpeModel bpe;
  // Llama 3 sets it (whole-token pieces are not merged up); GPT-2-style files
  // (SmolLM2) leave it false.
  bpe.ignore_merges = model.value("ignore_merges", false);
  bpe.drop_unknown_bytes = model.value("unk_token", nlohmann::json()).is_null() && !model.value("byte_fallback", false);
  bpe.pattern = read_pre_tokenizer_pattern(path, root);
  const std::vector<int> table = unicode_to_byte_table();
  std::string bytes;
  std::unordered_map<std::string, TokenId> spelled_ids;  // the vocab's own spelling -> id
  spelled_ids.reserve(model["vocab"].size());
  for (const auto& [token, id_json] : model["vocab"].items()) {
    if (!id_json.is_number_integer() || id_json.get<std::int64_t>() < 0 || id_json.get<std::int64_t>() > kMaxTokenId) {
      bad_json(path, fmt::format("model.vocab['{}'] is not a valid id", token));
    }
    auto id = id_json.get<TokenId>();
    if (!byte_level_to_bytes(token, table, bytes)) {
      bad_json(path, fmt::format("model.vocab['{}'] is not in the byte-level alphabet", token));
    }
    if (static_cast<std::size_t>(id) >= bpe.token_bytes.size()) bpe.token_bytes.resize(id + 1);
    bpe.token_bytes[id] = bytes;
    spelled_ids.emplace(token, id);
  }
  const auto& merges = model["merges"];
  bpe.merges.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& merge = merges[rank];
    std::string left, right;
    // Older files write "a b", newer ones ["a", "b"].
    if (merge.is_string()) {
      const std::string& text = merge.get_ref<const std::string&>();
      auto space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        bad_json(path, fmt::format("model.merges[{}] '{}' is not two tokens separated by one space", rank, text));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      bad_json(path, fmt::format("model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", rank));
    }
    auto left_id = spelled_ids.find(left);
    auto right_id = spelled_ids.find(right);
    auto merged_id = spelled_ids.find(left + right);
    if (left_id == spelled_ids.end() || right_id == spelled_ids.end() || merged_id == spelled_ids.end()) {
      bad_json(path, fmt::format("model.merges[{}] '{} {}': {} is not in model.vocab", rank, left, right,
                                 left_id == spelled_ids.end()    ? "'" + left + "'"
                                 : right_id == spelled_ids.end() ? "'" + right + "'"
                                                                 : "the merged token"));
    }
    // The first (lowest-rank) merge of a pair wins.
    bpe.merges.emplace(pair_key(left_id->second, right_id->second),
                       BpeModel::Merge{static_cast<std::int32_t>(rank), merged_id->second});
  }
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (std::size_t i = 0; i < root["added_tokens"].size(); ++i) {
      const auto& added = root["added_tokens"][i];
      if (!added.contains("id") || !added["id"].is_number_integer() || !added.contains("content") ||
          !added["content"].is_string()) {
        bad_json(path, fmt::format("added_tokens[{}] has no integer 'id' and string 'content'", i));
      }
      // The vocabulary (and the model's embedding) spans every id: one huge id
      // would size both from it.
      if (added["id"].get<std::int64_t>() < 0 || added["id"].get<std::int64_t>() > kMaxTokenId) {
        bad_json(path, fmt::format("added_tokens[{}] ('{}') has id {}, outside [0, {}]", i,
                                   added["content"].get<std::string>(), added["id"].dump(), kMaxTokenId));
      }
      // Every added token is treated as special: matched only by
      // encode_with_special (all 256 of Llama 3's are "special": true).
      bpe.special_tokens.emplace_back(added["content"].get<std::string>(), added["id"].get<TokenId>());
    }
  }
  // Llama 3's <|begin_of_text|> / <|end_of_text|> stay where the file has them
  // (its tokenizer_config.json names the chat model's <|eot_id|> as eos);
  // other tokenizers (SmolLM2) name theirs in tokenizer_config.json.
  bool has_llama3_names = false;
  for (const auto& [text, id] : bpe.special_tokens) has_llama3_names |= text == "<|begin_of_text|>";
  if (!has_llama3_names) read_sequence_tokens(path, bpe);
  return std::make_unique<ByteLevelBpeTokenizer>(TokenizerKind::kHuggingFaceJson, std::move(bpe), hash_hex(content));
}

// Standard base64 (RFC 4648), hand-written: a dozen lines are simpler than a
// dependency on a crypto library for it.
bool base64_decode(std::string_view text, std::string& out) {
  out.clear();
  std::uint32_t buffer = 0;
  int bits = 0;
  std::size_t padding = 0;
  for (char c : text) {
    int value;
    if (c >= 'A' && c <= 'Z') value = c - 'A';
    else if (c >= 'a' && c <= 'z') value = c - 'a' + 26;
    else if (c >= '0' && c <= '9') value = c - '0' + 52;
    else if (c == '+') value = 62;
    else if (c == '/') value = 63;
    else if (c == '=') { ++padding; continue; }
    else return false;
    if (padding > 0) return false;  // data after padding
    buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return !out.empty() && (text.size() % 4 == 0) && padding <= 2;
}

// Llama 3.1 / 3.2's special tokens, ids 128000-128255, as Meta's tokenizer.py
// names them (Llama 3.0 called 128004, 128005, 128008 and 128010 reserved).
std::vector<std::pair<std::string, TokenId>> llama3_special_tokens(TokenId first) {
  std::vector<std::string> names = {"<|begin_of_text|>", "<|end_of_text|>",        "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                    "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                                    "<|eom_id|>",          "<|eot_id|>",             "<|python_tag|>"};
  for (int i = 0; names.size() < 256; ++i) names.push_back(fmt::format("<|reserved_special_token_{}|>", 3 + i));
  std::vector<std::pair<std::string, TokenId>> specials;
  for (std::size_t i = 0; i < names.size(); ++i) specials.emplace_back(names[i], first + static_cast<TokenId>(i));
  return specials;
}

std::unique_ptr<Tokenizer> load_tiktoken(const std::string& path, const std::string& content) {
  BpeModel bpe;
  std::unordered_map<std::string, TokenId> ids;
  std::size_t line_number = 0;
  std::size_t start = 0;
  std::string bytes;
  while (start < content.size()) {
    std::size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string_view line(content.data() + start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto space = line.find(' ');
    if (space == std::string_view::npos) {
      throw InputError(fmt::format("{}:{}: expected '<base64 token> <rank>'", path, line_number));
    }
    if (!base64_decode(line.substr(0, space), bytes)) {
      throw InputError(fmt::format("{}:{}: '{}' is not valid base64", path, line_number, line.substr(0, space)));
    }
    std::string_view rank_text = line.substr(space + 1);
    std::int64_t rank = 0;
    if (rank_text.empty() || rank_text.size() > 9 ||
        rank_text.find_first_not_of("0123456789") != std::string_view::npos) {
      throw InputError(fmt::format("{}:{}: rank '{}' is not a non-negative integer", path, line_number, rank_text));
    }
    rank = std::stoll(std::string(rank_text));
    if (rank != static_cast<std::int64_t>(bpe.token_bytes.size())) {
      throw InputError(fmt::format("{}:{}: rank {} out of order (expected {}); ranks must be 0, 1, 2, ...", path,
                                   line_number, rank, bpe.token_bytes.size()));
    }
    if (!ids.emplace(bytes, static_cast<TokenId>(rank)).second) {
      throw InputError(fmt::format("{}:{}: token '{}' appears twice", path, line_number, line.substr(0, space)));
    }
    bpe.token_bytes.push_back(bytes);
  }
  if (bpe.token_bytes.empty()) throw InputError(fmt::format("{}: tiktoken file has no tokens", path));
  // tiktoken merges the adjacent pair whose concatenation has the lowest rank;
  // as a pair table: every split of a token into two tokens merges at the
  // token's rank. Parts are always tokens, so this is exactly tiktoken's rule.
  for (std::size_t id = 0; id < bpe.token_bytes.size(); ++id) {
    const std::string& token = bpe.token_bytes[id];
    for (std::size_t split = 1; split < token.size(); ++split) {
      auto left = ids.find(token.substr(0, split));
      if (left == ids.end()) continue;
      auto right = ids.find(token.substr(split));
      if (right == ids.end()) continue;
      bpe.merges.emplace(pair_key(left->second, right->second),
                         BpeModel::Merge{static_cast<std::int32_t>(id), static_cast<TokenId>(id)});
    }
  }
  bpe.special_tokens = llama3_special_tokens(static_cast<TokenId>(bpe.token_bytes.size()));
  return std::make_unique<ByteLevelBpeTokenizer>(TokenizerKind::kTiktoken, std::move(bpe), hash_hex(content));
}

bool looks_like_tiktoken(const std::string& content) {
  std::size_t end = content.find('\n');
  std::string_view line(content.data(), end == std::string::npos ? content.size() : end);
  auto space = line.find(' ');
  if (space == std::string_view::npos || space == 0) return false;
  std::string_view token = line.substr(0, space), rank = line.substr(space + 1);
  return token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
             std::string_view::npos &&
         !rank.empty() && rank.find_first_not_of("0123456789\r") == std::string_view::npos;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  std::string content = read_file(path);
  if (content.empty()) throw InputError(fmt::format("{}: tokenizer file is empty", path));
  std::size_t first = content.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && content[first] == '{') return load_huggingface_json(path, content);
  if (looks_like_tiktoken(content)) return load_tiktoken(path, content);
  // A sentencepiece ModelProto starts with field 1 (pieces), wire type 2: 0x0a.
  if (content[0] == '\x0a') {
    return tokenizer_detail::load_sentencepiece(path, hash_hex(content));
  }
  throw InputError(fmt::format("{}: not a tokenizer file: it is neither a Hugging Face tokenizer.json (JSON object), "
                               "a tiktoken tokenizer.model ('<base64> <rank>' lines) nor a sentencepiece .model",
                               path));
}

}  // namespace metareuse
