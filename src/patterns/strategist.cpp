// The strategist on a model: prompts in, decoded replies out, through
// generate_batch (model/generate.h). The model, its tokenizer and template are
// loaded as eval loads a model (load_answering_model), and a prompt is one user
// turn tokenized as eval tokenizes a question (PromptFormat::test_prompt), so
// the template's end of turn and the eos stop a reply. Torch; the torch binary only.
#include "metareuse/patterns/strategist.h"

#include <fmt/format.h>  // the log line

#include <memory>

#include "metareuse/checkpoint/answering_model.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/generation_limits.h"
#include "metareuse/tokenizer/prompt_format.h"

namespace metareuse {

Strategist make_model_strategist(const StrategistOptions& options) {
  if (options.model.empty()) throw UsageError("the strategist needs a model: give --model (patterns.model)");
  if (options.decoding.batch_size < 1) throw UsageError("patterns.batch_size must be >= 1");
  auto loaded = std::make_shared<AnsweringModel>(
      load_answering_model(options.model, options.tokenizer, options.template_name));
  auto format =
      std::make_shared<PromptFormat>(*loaded->tokenizer, loaded->text.template_name, loaded->text.tokenizer);
  GenerationOptions generation = options.decoding;
  generation.stop_on_eos = true;
  generation.stop_ids.assign(format->stop_ids().begin(), format->stop_ids().end());
  log_info("strategist: {} ({}, template {}), {} new tokens at most, {}", loaded->description,
            loaded->text.tokenizer, loaded->text.template_name, generation.max_new_tokens,
            generation.greedy ? "greedy" : fmt::format("sampled at temperature {}", generation.temperature));

  return [loaded, format, generation](const std::vector<std::string>& prompts,
                                      const std::vector<std::uint64_t>& sequence_ids) {
    std::vector<std::vector<std::int64_t>> ids;
    for (const std::string& prompt : prompts) {
      const std::vector<TokenId> tokens = format->test_prompt(prompt);
      validate_generation_request(loaded->model->config(), static_cast<std::int64_t>(tokens.size()),
                                  generation.max_new_tokens);
      ids.emplace_back(tokens.begin(), tokens.end());
    }
    std::vector<std::string> replies;
    for (const Generated& generated : generate_batch(*loaded->model, ids, generation, sequence_ids)) {
      replies.push_back(loaded->tokenizer->decode(std::vector<TokenId>(generated.ids.begin(), generated.ids.end())));
    }
    return replies;
  };
}

}  // namespace metareuse
