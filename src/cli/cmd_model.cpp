// metareuse forward / generate: run a Llama model from a model source on
// token ids. Both run on rank 0 only (one process is enough for inference);
// other ranks return at once. Every flag is a config key (forward.*,
// generate.*); the work is the library's (eval/forward_file.h, eval/generate_text.h).
#include <fmt/format.h>       // run.seed's override
#include <nlohmann/json.hpp>  // the output lines

#include <iostream>

#include "commands.h"
#include "flags.h"
#include "metareuse/core/error.h"
#include "metareuse/eval/forward_file.h"
#include "metareuse/eval/generate_text.h"
#include "metareuse/run/resolve.h"  // forward_file_options, generate_text_options

namespace metareuse::cli_detail {

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
  std::cout << forward_file(forward_file_options(context.config)).dump() << std::endl;
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
                              "Prompts file, one prompt a line: text, or JSON arrays of token ids; one output line "
                              "each (generate.prompts)",
                              overrides);
  add_value_flag(app, "--prompts-format", "generate.prompts_format",
                 "How --prompts is read: auto (default), text or ids (generate.prompts_format)", overrides)
      ->check(CLI::IsMember({"auto", "text", "ids"}));
  ids->excludes(text)->excludes(file);
  text->excludes(file);
  add_value_flag(app, "--batch-size", "generate.batch_size", "Prompts generated together, with --prompts "
                 "(generate.batch_size)", overrides)
      ->check(CLI::PositiveNumber);
  add_value_flag(app, "--tokenizer", "tokenizer.path",
                 "Tokenizer file, to encode text prompts and decode the output (default: the model's own, a "
                 "checkpoint's or the folder's tokenizer.json; tokenizer.path)",
                 overrides);
  add_switch_flag(app, "--chat", "generate.chat", "true",
                  "Put each text prompt through the model's template as one user turn, with the generation prompt",
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
  add_switch_flag(app, "--no-stop", "generate.stop", "false",
                  "Generate --max-new-tokens tokens, past the eos and end-of-turn tokens it stops at by default",
                  overrides);
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
