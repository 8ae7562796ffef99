// metareuse forward / generate: run a Llama model from a model source on
// token ids. Both run on rank 0 only (one process is enough for inference);
// other ranks return at once.
#include <fmt/format.h>       // messages
#include <nlohmann/json.hpp>  // the generate output line
#include <torch/torch.h>      // tensors

#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "flags.h"
#include "metareuse/tokenizer/chat_template.h"
#include "metareuse/tokenizer/tokenizer.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/timing.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/generation_limits.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/checkpoint/model_source.h"
#include "metareuse/model/source.h"

namespace metareuse::cli_detail {
namespace {

struct ForwardArguments {
  std::string model;
  std::string ids;
  std::string out;
  std::string dtype = "float32";
};
ForwardArguments forward_arguments;

struct GenerateArguments {
  std::string model;
  std::string prompt_ids;
  std::string prompts_file;
  std::int64_t batch_size = 8;
  std::string prompt;
  std::string tokenizer;
  std::int64_t max_new_tokens = 32;
  bool greedy = false;
  double temperature = -1;  // < 0: not given
  double top_p = 1.0;
  bool seed_given = false;
  bool stop_on_eos = false;
  bool no_cache = false;
  bool chat = false;
};
GenerateArguments generate_arguments;

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  throw UsageError(fmt::format("--dtype must be float32 or bfloat16, got '{}'", name));
}

std::vector<std::int64_t> parse_id_list(const std::string& text) {
  std::vector<std::int64_t> ids;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const auto first = item.find_first_not_of(" \t");
    const auto last = item.find_last_not_of(" \t");
    if (first == std::string::npos) throw UsageError(fmt::format("--prompt-ids '{}': empty item", text));
    item = item.substr(first, last - first + 1);
    std::size_t used = 0;
    std::int64_t value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size()) throw UsageError(fmt::format("--prompt-ids: '{}' is not an integer token id", item));
    ids.push_back(value);
  }
  if (ids.empty()) throw UsageError("--prompt-ids is empty");
  return ids;
}

}  // namespace

void forward_options(CLI::App& app, std::vector<std::string>&) {
  app.add_option("--model", forward_arguments.model, "Model: a Hugging Face folder (config.json + safetensors)")
      ->required();
  app.add_option("--ids", forward_arguments.ids, "Safetensors file holding input_ids, int64 [B, T]")->required();
  app.add_option("--out", forward_arguments.out, "Safetensors file to write: logits f32 [B, T, V] and loss f32 [1]")
      ->required();
  app.add_option("--dtype", forward_arguments.dtype, "Compute dtype: float32 (default) or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
}

int forward_run(CommandContext& context) {
  if (context.runtime.rank() != 0) return kExitOk;
  const ForwardArguments& arguments = forward_arguments;
  Stopwatch watch;
  auto source = open_model_or_checkpoint(arguments.model);
  LlamaModel model = load_model(*source, torch::TensorOptions().dtype(parse_dtype(arguments.dtype)));
  SafetensorsFile ids_file(arguments.ids);
  if (!ids_file.contains("input_ids")) {
    throw InputError(fmt::format("'{}' has no tensor 'input_ids' (it holds: {})", arguments.ids,
                                 fmt::join(ids_file.names(), ", ")));
  }
  torch::Tensor input_ids = ids_file.tensor("input_ids");
  if (input_ids.scalar_type() == torch::kInt32) input_ids = input_ids.to(torch::kInt64);
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64) {
    throw InputError(fmt::format("'{}': input_ids must be int64 [B, T], got {} [{}]", arguments.ids,
                                 c10::toString(input_ids.scalar_type()), fmt::join(input_ids.sizes(), ", ")));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model.forward(input_ids).to(torch::kFloat32);  // (B, T, V)
  torch::Tensor loss = next_token_loss(logits, input_ids).reshape({1});
  if (!std::isfinite(loss.item<double>())) {
    throw InputError(fmt::format("{}: the forward pass gave a non-finite loss ({}) on {}; nothing was written to {}",
                                 arguments.model, loss.item<double>(), arguments.ids, arguments.out));
  }
  write_safetensors(arguments.out, {{"logits", logits}, {"loss", loss}});
  nlohmann::json summary = {{"loss", loss.item<double>()},
                            {"logits_shape", logits.sizes().vec()},
                            {"out", arguments.out},
                            {"seconds", watch.seconds()}};
  std::cout << summary.dump() << std::endl;
  return kExitOk;
}

void generate_options(CLI::App& app, std::vector<std::string>& overrides) {
  GenerateArguments& arguments = generate_arguments;
  app.add_option("--model", arguments.model, "Model: a Hugging Face folder (config.json + safetensors)")->required();
  auto* ids = app.add_option("--prompt-ids", arguments.prompt_ids, "Prompt as comma-separated token ids: 1,2,3");
  auto* text = app.add_option("--prompt", arguments.prompt, "Prompt text (needs --tokenizer)");
  auto* file = app.add_option("--prompts", arguments.prompts_file,
                              "Prompts file: JSON Lines, one array of token ids per line; one output line each");
  ids->excludes(text)->excludes(file);
  text->excludes(file);
  app.add_option("--batch-size", arguments.batch_size, "Prompts generated together (with --prompts)")
      ->check(CLI::PositiveNumber);
  app.add_option("--tokenizer", arguments.tokenizer,
                 "Tokenizer file, to encode --prompt and decode the output (default: the model folder's tokenizer.json)");
  app.add_flag("--chat", arguments.chat,
               "Put --prompt through the model's own chat template as one user turn, with the generation prompt");
  app.add_option("--max-new-tokens", arguments.max_new_tokens, "Tokens to generate (prompt + new <= the model's positions)")
      ->check(whole_number(0, int64_t{1} << 24));
  auto* greedy = app.add_flag("--greedy", arguments.greedy, "Pick the most likely token (the default)");
  auto* temperature = app.add_option("--temperature", arguments.temperature, "Sample with this temperature (> 0)")
                          ->check(positive_number());
  auto* top_p = app.add_option("--top-p", arguments.top_p, "Sample from the smallest set of tokens with this much "
                                                           "probability, in (0, 1]")
                    ->check(CLI::Range(0.0, 1.0));
  auto* seed = app.add_option_function<std::uint64_t>(
      "--seed",
      [&overrides, &arguments](const std::uint64_t& value) {
        arguments.seed_given = true;
        overrides.push_back(fmt::format("run.seed={}", value));
      },
      "Sampling seed (sets run.seed; same seed, same tokens)");
  greedy->excludes(temperature)->excludes(top_p)->excludes(seed);
  app.add_flag("--stop-on-eos", arguments.stop_on_eos, "Stop after the model emits an end-of-sequence token");
  app.add_flag("--no-cache", arguments.no_cache, "Recompute the whole sequence for every token (slow; for comparison)");
}

int generate_run(CommandContext& context) {
  if (context.runtime.rank() != 0) return kExitOk;
  const GenerateArguments& arguments = generate_arguments;
  std::string tokenizer_path = arguments.tokenizer.empty() ? model_tokenizer_path(arguments.model) : arguments.tokenizer;
  if (!arguments.prompt.empty() && tokenizer_path.empty()) {
    throw UsageError(fmt::format("--prompt needs --tokenizer (the model folder has no tokenizer.json; looked for {})",
                                 absolute_text((std::filesystem::path(arguments.model) / "tokenizer.json").string())));
  }
  if (arguments.chat && arguments.prompt.empty()) throw UsageError("--chat needs --prompt");
  if (arguments.prompt_ids.empty() && arguments.prompt.empty() && arguments.prompts_file.empty()) {
    throw UsageError("give the prompt with --prompt-ids 1,2,3 (or --prompt with --tokenizer, or --prompts FILE)");
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tokenizer_path.empty()) tokenizer = load_tokenizer(tokenizer_path);

  GenerationOptions options;
  options.max_new_tokens = arguments.max_new_tokens;
  options.greedy = arguments.temperature < 0;
  options.temperature = options.greedy ? 1.0 : arguments.temperature;
  options.top_p = arguments.top_p;
  options.seed = static_cast<std::uint64_t>(context.config.get_int("run.seed"));
  options.stop_on_eos = arguments.stop_on_eos;
  options.use_cache = !arguments.no_cache;
  options.batch_size = arguments.batch_size;
  if (options.greedy && (arguments.top_p != 1.0 || arguments.seed_given)) {
    throw UsageError("--top-p and --seed apply to sampling: give --temperature too");
  }

  auto source = open_model_or_checkpoint(arguments.model);
  LlamaModel model = load_model(*source, torch::TensorOptions().dtype(torch::kFloat32));
  std::vector<std::vector<std::int64_t>> prompts;
  if (!arguments.prompts_file.empty()) {
    prompts = read_prompt_ids_file(arguments.prompts_file);
  } else if (arguments.chat) {
    auto example = ChatTemplate::load(arguments.model).tokenize(*tokenizer, {{"user", arguments.prompt, false}}, true);
    prompts.emplace_back(example.ids.begin(), example.ids.end());
  } else if (!arguments.prompt.empty()) {
    // The prompt is ordinary text (special-token text stays text); bos first, as the templates do.
    prompts.emplace_back();
    if (tokenizer->bos_id() >= 0) prompts.back().push_back(tokenizer->bos_id());
    for (TokenId id : tokenizer->encode(arguments.prompt)) prompts.back().push_back(id);
  } else {
    prompts.push_back(parse_id_list(arguments.prompt_ids));
  }
  // Bounds before any memory is touched: positions, and the prefill's scores.
  for (const auto& prompt : prompts) {
    validate_generation_request(model.config(), static_cast<std::int64_t>(prompt.size()), options.max_new_tokens);
  }
  Stopwatch watch;
  // Each line's index seeds its sampling (the default sequence ids).
  std::vector<Generated> outputs = generate_batch(model, prompts, options);
  const double seconds = watch.seconds();
  std::int64_t total = 0;
  for (const auto& generated : outputs) total += static_cast<std::int64_t>(generated.ids.size());
  log_info("generated {} tokens for {} prompts in {:.3f} s ({:.1f} tokens/s; {}, {}, batch {})", total,
            outputs.size(), seconds, seconds > 0 ? static_cast<double>(total) / seconds : 0.0,
            options.greedy ? "greedy" : "sampled", options.use_cache ? "KV cache" : "no cache", options.batch_size);
  for (auto& generated : outputs) {
    // With --stop-on-eos the eos that ended the sequence is printed last, as before.
    std::vector<std::int64_t> ids = generated.ids;
    if (generated.stop >= 0) ids.push_back(generated.stop);
    nlohmann::json line = {{"ids", ids}};
    if (tokenizer) {
      std::vector<TokenId> text_ids;
      for (auto id : ids) {
        if (id >= 0 && id < tokenizer->vocab_size()) text_ids.push_back(static_cast<TokenId>(id));
      }
      line["text"] = tokenizer->decode(text_ids);
    }
    std::cout << line.dump() << std::endl;
  }
  return kExitOk;
}

}  // namespace metareuse::cli_detail
