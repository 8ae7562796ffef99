// The strategist on a model: prompts in, decoded replies out, through
// generate_batch (model/generate.h). Torch; the torch binary only.
#include "metareuse/patterns/strategist.h"

#include <fmt/format.h>     // messages
#include <torch/torch.h>    // the model's tensor options

#include <memory>

#include "metareuse/checkpoint/model_source.h"  // open_model_or_checkpoint
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/generation_limits.h"
#include "metareuse/tokenizer/chat_template.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {

Strategist make_model_strategist(const StrategistOptions& options) {
  if (options.model.empty()) throw UsageError("the strategist needs a model: give --model (patterns.model)");
  if (options.batch_size < 1) throw UsageError("patterns.batch_size must be >= 1");
  std::shared_ptr<ModelSource> source = open_model_or_checkpoint(options.model);
  const std::string tokenizer_path = options.tokenizer.empty() ? model_tokenizer_path(options.model) : options.tokenizer;
  if (tokenizer_path.empty()) {
    throw UsageError(fmt::format("strategist: model '{}' has no tokenizer.json: give --tokenizer (tokenizer.path)",
                                 options.model));
  }
  std::shared_ptr<Tokenizer> tokenizer = load_tokenizer(tokenizer_path);
  if (tokenizer->vocab_size() > source->config().vocab_size) {
    throw InputError(fmt::format("tokenizer {} has {} tokens but model {} has {} embedding rows", tokenizer_path,
                                 tokenizer->vocab_size(), options.model, source->config().vocab_size));
  }
  // The model's own chat template when its folder has one (SmolLM2: ChatML),
  // else tokenizer.template: Llama 3 headers (chat) or bos + text (plain).
  std::shared_ptr<ChatTemplate> chat;
  if (has_chat_template(options.model)) chat = std::make_shared<ChatTemplate>(ChatTemplate::load(options.model));
  if (!chat && options.template_name != "chat" && options.template_name != "plain") {
    throw UsageError(fmt::format("tokenizer.template must be chat or plain, got '{}'", options.template_name));
  }
  auto model = std::make_shared<LlamaModel>(load_model(*source, torch::TensorOptions().dtype(torch::kFloat32)));
  log_info("strategist: {} ({}; prompts through {}), {} new tokens at most, {}", source->description(),
            tokenizer_path, chat ? chat->where() : "tokenizer.template=" + options.template_name,
            options.max_new_tokens,
            options.temperature > 0 ? fmt::format("sampled at temperature {}", options.temperature) : "greedy");

  GenerationOptions generation;
  generation.max_new_tokens = options.max_new_tokens;
  generation.greedy = options.temperature <= 0;
  generation.temperature = generation.greedy ? 1.0 : options.temperature;
  generation.seed = options.seed;
  generation.batch_size = options.batch_size;
  generation.stop_on_eos = true;  // the config's eos ids
  if (tokenizer->eos_id() >= 0) generation.stop_ids.push_back(tokenizer->eos_id());
  for (const char* end_of_turn : {"<|eot_id|>", "<|im_end|>"}) {
    if (auto id = tokenizer->special_id(end_of_turn)) generation.stop_ids.push_back(*id);
  }
  const std::string template_name = options.template_name;

  return [model, tokenizer, chat, generation, template_name](const std::vector<std::string>& prompts,
                                                              const std::vector<std::uint64_t>& sequence_ids) {
    std::vector<std::vector<std::int64_t>> ids;
    for (const std::string& prompt : prompts) {
      const std::vector<ChatMessage> messages = {{"user", prompt, false}};
      std::vector<TokenId> tokens;
      if (chat) {
        tokens = chat->tokenize(*tokenizer, messages, /*add_generation_prompt=*/true).ids;
      } else if (template_name == "chat") {
        tokens = apply_chat_template(*tokenizer, messages, /*add_generation_prompt=*/true).ids;
      } else {
        if (tokenizer->bos_id() >= 0) tokens.push_back(tokenizer->bos_id());
        for (TokenId id : tokenizer->encode(prompt)) tokens.push_back(id);
      }
      validate_generation_request(model->config(), static_cast<std::int64_t>(tokens.size()), generation.max_new_tokens);
      ids.emplace_back(tokens.begin(), tokens.end());
    }
    std::vector<std::string> replies;
    for (const Generated& generated : generate_batch(*model, ids, generation, sequence_ids)) {
      replies.push_back(tokenizer->decode(std::vector<TokenId>(generated.ids.begin(), generated.ids.end())));
    }
    return replies;
  };
}

}  // namespace metareuse
