// metareuse forward / generate: run a Llama model from a model source on
// token ids. Both run on rank 0 only (one process is enough for inference);
// other ranks return at once. Every flag is a config key (forward.*,
// generate.*); generate's work is the library's (eval/generate_text.h).
#include <fmt/format.h>       // messages
#include <nlohmann/json.hpp>  // the output lines
#include <torch/torch.h>      // tensors

#include <cmath>
#include <iostream>

#include "commands.h"
#include "flags.h"
#include "metareuse/checkpoint/model_source.h"
#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"
#include "metareuse/eval/generate_text.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/run/resolve.h"  // generate_text_options

namespace metareuse::cli_detail {
namespace {

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  throw UsageError(fmt::format("--dtype must be float32 or bfloat16, got '{}'", name));
}

std::string required(const Config& config, const std::string& key, const char* flag) {
  std::string value = config.get_string(key);
  if (value.empty()) throw UsageError(fmt::format("give {} ({})", flag, key));
  return value;
}

}  // namespace

void forward_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--model", "forward.model", "Model: a Hugging Face folder or a checkpoint (forward.model)",
                 overrides);
  add_value_flag(app, "--ids", "forward.ids", "Safetensors file holding input_ids, int64 [B, T] (forward.ids)",
                 overrides);
  add_value_flag(app, "--out", "forward.out",
                 "Safetensors file to write: logits f32 [B, T, V] and loss f32 [1] (forward.out)", overrides);
  add_value_flag(app, "--dtype", "forward.dtype", "Compute dtype: float32 (default) or bfloat16 (forward.dtype)",
                 overrides)
      ->check(CLI::IsMember({"float32", "bfloat16"}));
}

int forward_run(CommandContext& context) {
  if (context.runtime.rank() != 0) return kExitOk;
  const Config& config = context.config;
  const std::string model_path = required(config, "forward.model", "the model with --model");
  const std::string ids_path = required(config, "forward.ids", "the input ids with --ids");
  const std::string out_path = required(config, "forward.out", "the output file with --out");
  Stopwatch watch;
  auto source = open_model_or_checkpoint(model_path);
  LlamaModel model = load_model(*source, torch::TensorOptions().dtype(parse_dtype(config.get_string("forward.dtype"))));
  SafetensorsFile ids_file(ids_path);
  if (!ids_file.contains("input_ids")) {
    throw InputError(fmt::format("'{}' has no tensor 'input_ids' (it holds: {})", ids_path,
                                 fmt::join(ids_file.names(), ", ")));
  }
  torch::Tensor input_ids = ids_file.tensor("input_ids");
  if (input_ids.scalar_type() == torch::kInt32) input_ids = input_ids.to(torch::kInt64);
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64) {
    throw InputError(fmt::format("'{}': input_ids must be int64 [B, T], got {} [{}]", ids_path,
                                 c10::toString(input_ids.scalar_type()), fmt::join(input_ids.sizes(), ", ")));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model.forward(input_ids).to(torch::kFloat32);  // (B, T, V)
  torch::Tensor loss = next_token_loss(logits, input_ids).reshape({1});
  if (!std::isfinite(loss.item<double>())) {
    throw InputError(fmt::format("{}: the forward pass gave a non-finite loss ({}) on {}; nothing was written to {}",
                                 model_path, loss.item<double>(), ids_path, out_path));
  }
  write_safetensors(out_path, {{"logits", logits}, {"loss", loss}});
  nlohmann::json summary = {{"loss", loss.item<double>()},
                            {"logits_shape", logits.sizes().vec()},
                            {"out", out_path},
                            {"seconds", watch.seconds()}};
  std::cout << summary.dump() << std::endl;
  return kExitOk;
}

void generate_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--model", "generate.model", "Model: a Hugging Face folder or a checkpoint (generate.model)",
                 overrides);
  auto* ids = add_value_flag(app, "--prompt-ids", "generate.prompt_ids",
                             "Prompt as comma-separated token ids: 1,2,3 (generate.prompt_ids)", overrides);
  auto* text = add_value_flag(app, "--prompt", "generate.prompt", "Prompt text (needs a tokenizer; generate.prompt)",
                              overrides);
  auto* file = add_value_flag(app, "--prompts", "generate.prompts",
                              "Prompts file: JSON Lines, one array of token ids per line; one output line each "
                              "(generate.prompts)",
                              overrides);
  ids->excludes(text)->excludes(file);
  text->excludes(file);
  add_value_flag(app, "--batch-size", "generate.batch_size", "Prompts generated together, with --prompts "
                 "(generate.batch_size)", overrides)
      ->check(CLI::PositiveNumber);
  add_value_flag(app, "--tokenizer", "tokenizer.path",
                 "Tokenizer file, to encode --prompt and decode the output (default: the model folder's "
                 "tokenizer.json; tokenizer.path)",
                 overrides);
  add_switch_flag(app, "--chat", "generate.chat", "true",
                  "Put --prompt through the model's own chat template as one user turn, with the generation prompt",
                  overrides);
  add_value_flag(app, "--max-new-tokens", "generate.max_new_tokens",
                 "Tokens to generate, prompt + new <= the model's positions (generate.max_new_tokens)", overrides)
      ->check(whole_number(0, int64_t{1} << 24));
  auto* greedy = add_switch_flag(app, "--greedy", "generate.temperature", "0",
                                 "Pick the most likely token (the default)", overrides);
  auto* temperature = add_value_flag(app, "--temperature", "generate.temperature",
                                     "Sample with this temperature, > 0 (generate.temperature)", overrides)
                          ->check(positive_number());
  auto* top_p = add_value_flag(app, "--top-p", "generate.top_p", "Sample from the smallest set of tokens with this "
                               "much probability, in (0, 1] (generate.top_p)", overrides)
                    ->check(CLI::Range(0.0, 1.0));
  auto* seed = app.add_option_function<std::uint64_t>(
      "--seed", [&overrides](const std::uint64_t& value) { overrides.push_back(fmt::format("run.seed={}", value)); },
      "Sampling seed (sets run.seed; same seed, same tokens)");
  greedy->excludes(temperature)->excludes(top_p)->excludes(seed);
  // --top-p and --seed apply to sampling.
  top_p->needs(temperature);
  seed->needs(temperature);
  add_switch_flag(app, "--stop-on-eos", "generate.stop_on_eos", "true",
                  "Stop after the model emits an end-of-sequence token", overrides);
  add_switch_flag(app, "--no-cache", "generate.use_cache", "false",
                  "Recompute the whole sequence for every token (slow; for comparison)", overrides);
}

int generate_run(CommandContext& context) {
  if (context.runtime.rank() != 0) return kExitOk;
  for (const nlohmann::json& line : generate_text(generate_text_options(context.config))) {
    std::cout << line.dump() << std::endl;
  }
  return kExitOk;
}

}  // namespace metareuse::cli_detail
