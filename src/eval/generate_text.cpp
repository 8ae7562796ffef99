// `metareuse generate` (generate_text.h).
#include "metareuse/eval/generate_text.h"

#include <fmt/format.h>
#include <torch/torch.h>  // TensorOptions

#include <filesystem>
#include <sstream>

#include "metareuse/checkpoint/model_source.h"  // open_model_or_checkpoint
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/core/timing.h"
#include "metareuse/model/generation_limits.h"
#include "metareuse/model/source.h"  // load_model
#include "metareuse/tokenizer/chat_template.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {
namespace {

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

// The tokenizer: the one given, else the model folder's tokenizer.json ("": none).
std::string tokenizer_of(const GenerateTextOptions& options) {
  return options.tokenizer.empty() ? model_tokenizer_path(options.model) : options.tokenizer;
}

}  // namespace

void check_generate_text_options(const GenerateTextOptions& options) {
  if (options.model.empty()) throw UsageError("give the model with --model (generate.model)");
  const int prompts = !options.prompt_ids.empty() + !options.prompt.empty() + !options.prompts_file.empty();
  if (prompts == 0) {
    throw UsageError("give the prompt with --prompt-ids 1,2,3 (or --prompt with --tokenizer, or --prompts FILE)");
  }
  if (prompts > 1) throw UsageError("give one of --prompt-ids, --prompt and --prompts");
  if (!options.prompt.empty() && tokenizer_of(options).empty()) {
    throw UsageError(fmt::format("--prompt needs --tokenizer (the model folder has no tokenizer.json; looked for {})",
                                 absolute_text((std::filesystem::path(options.model) / "tokenizer.json").string())));
  }
  if (options.chat && options.prompt.empty()) throw UsageError("--chat needs --prompt");
  if (options.generation.greedy && options.generation.top_p != 1.0) {
    throw UsageError("--top-p (generate.top_p) applies to sampling: give --temperature too");
  }
}

std::vector<nlohmann::json> generate_text(const GenerateTextOptions& options) {
  check_generate_text_options(options);
  const std::string tokenizer_path = tokenizer_of(options);
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tokenizer_path.empty()) tokenizer = load_tokenizer(tokenizer_path);

  auto source = open_model_or_checkpoint(options.model);
  LlamaModel model = load_model(*source, torch::TensorOptions().dtype(torch::kFloat32));
  std::vector<std::vector<std::int64_t>> prompts;
  if (!options.prompts_file.empty()) {
    prompts = read_prompt_ids_file(options.prompts_file);
  } else if (options.chat) {
    auto example = ChatTemplate::load(options.model).tokenize(*tokenizer, {{"user", options.prompt, false}}, true);
    prompts.emplace_back(example.ids.begin(), example.ids.end());
  } else if (!options.prompt.empty()) {
    // The prompt is ordinary text (special-token text stays text); bos first, as the templates do.
    prompts.emplace_back();
    if (tokenizer->bos_id() >= 0) prompts.back().push_back(tokenizer->bos_id());
    for (TokenId id : tokenizer->encode(options.prompt)) prompts.back().push_back(id);
  } else {
    prompts.push_back(parse_id_list(options.prompt_ids));
  }
  // Bounds before any memory is touched: positions, and the prefill's scores.
  for (const auto& prompt : prompts) {
    validate_generation_request(model.config(), static_cast<std::int64_t>(prompt.size()),
                                options.generation.max_new_tokens);
  }
  const GenerationOptions& generation = options.generation;
  Stopwatch watch;
  // Each line's index seeds its sampling (the default sequence ids).
  std::vector<Generated> outputs = generate_batch(model, prompts, generation);
  const double seconds = watch.seconds();
  std::int64_t total = 0;
  for (const auto& generated : outputs) total += static_cast<std::int64_t>(generated.ids.size());
  log_info("generated {} tokens for {} prompts in {:.3f} s ({:.1f} tokens/s; {}, {}, batch {})", total,
            outputs.size(), seconds, seconds > 0 ? static_cast<double>(total) / seconds : 0.0,
            generation.greedy ? "greedy" : "sampled", generation.use_cache ? "KV cache" : "no cache",
            generation.batch_size);
  std::vector<nlohmann::json> lines;
  for (auto& generated : outputs) {
    // With --stop-on-eos the eos that ended the sequence is printed last, as before.
    const std::vector<std::int64_t> ids = generated.ids_with_stop();
    nlohmann::json line = {{"ids", ids}};
    if (tokenizer) {
      std::vector<TokenId> text_ids;
      for (auto id : ids) {
        if (id >= 0 && id < tokenizer->vocab_size()) text_ids.push_back(static_cast<TokenId>(id));
      }
      line["text"] = tokenizer->decode(text_ids);
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace metareuse
