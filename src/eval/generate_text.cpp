// `metareuse generate` (generate_text.h).
#include "metareuse/eval/generate_text.h"

#include <fmt/format.h>
#include <torch/torch.h>  // TensorOptions

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "metareuse/checkpoint/answering_model.h"  // the model with its tokenizer and template, as eval's
#include "metareuse/core/error.h"
#include "metareuse/core/looked_for.h"  // why_unreadable
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"
#include "metareuse/model/generation_limits.h"
#include "metareuse/tokenizer/prompt_format.h"  // PromptFormat: the chat prompt and the stop ids
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

// A prompts file line as token ids, when it is a non-empty JSON array of integers.
std::optional<std::vector<std::int64_t>> ids_line(const std::string& text) {
  const nlohmann::json item = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!item.is_array() || item.empty()) return std::nullopt;
  for (const auto& id : item) {
    if (!id.is_number_integer()) return std::nullopt;
  }
  return item.get<std::vector<std::int64_t>>();
}

}  // namespace

PromptsFile read_prompts_file(const std::string& path, const std::string& format) {
  if (format != "auto" && format != "text" && format != "ids") {
    throw UsageError(fmt::format("--prompts-format '{}': give auto, text or ids (generate.prompts_format)", format));
  }
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the prompts file: {}", path, why_unreadable(path)));
  PromptsFile file;
  std::int64_t first_line = 0;  // the line that decided an auto file's kind
  std::string text;
  for (std::int64_t line = 1; std::getline(in, text); ++line) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    std::optional<std::vector<std::int64_t>> ids = format == "text" ? std::nullopt : ids_line(text);
    if (format == "ids" && !ids) {
      throw InputError(fmt::format("{}:{}: expected a non-empty JSON array of token ids, as [1, 2, 3] "
                                   "(--prompts-format ids)",
                                   path, line));
    }
    if (first_line == 0) {
      first_line = line;
      file.text = !ids;
    } else if (file.text == !!ids) {
      throw InputError(fmt::format("{}:{}: {} line in a file of {} (line {} is {}); one kind a file, or give "
                                   "--prompts-format text to read every line as text",
                                   path, line, ids ? "a token-id" : "a text", ids ? "text prompts" : "token ids",
                                   first_line, ids ? "text" : "token ids"));
    }
    if (ids) {
      file.ids.push_back(std::move(*ids));
    } else {
      file.texts.push_back(text);
    }
  }
  if (first_line == 0) throw InputError(fmt::format("{}: no prompts", path));
  return file;
}

void check_generate_text_options(const GenerateTextOptions& options) {
  if (options.model.empty()) throw UsageError("give the model with --model (generate.model)");
  const int prompts = !options.prompt_ids.empty() + !options.prompt.empty() + !options.prompts_file.empty();
  if (prompts == 0) {
    throw UsageError("give the prompt with --prompt-ids 1,2,3 (or --prompt TEXT, or --prompts FILE)");
  }
  if (prompts > 1) throw UsageError("give one of --prompt-ids, --prompt and --prompts");
  if (options.chat && !options.prompt_ids.empty()) {
    throw UsageError("--chat needs text: --prompt or a --prompts file of text");
  }
  if (options.generation.greedy && options.generation.top_p != 1.0) {
    throw UsageError("--top-p (generate.top_p) applies to sampling: give --temperature too");
  }
}

std::vector<nlohmann::json> generate_text(const GenerateTextOptions& options) {
  check_generate_text_options(options);
  // The prompts file first: its mistakes cost no model load.
  PromptsFile file;
  if (!options.prompts_file.empty()) file = read_prompts_file(options.prompts_file, options.prompts_format);
  std::vector<std::string> texts = file.texts;
  if (!options.prompt.empty()) texts.push_back(options.prompt);
  if (options.chat && texts.empty()) {
    throw UsageError(fmt::format("--chat needs text prompts, but {} holds token ids", options.prompts_file));
  }

  const AnsweringModel loaded = load_answering_model(options.model, options.tokenizer, options.template_name,
                                                    /*require_tokenizer=*/!texts.empty());
  const LlamaModel& model = *loaded.model;
  const Tokenizer* tokenizer = loaded.tokenizer.get();
  // The template: for --chat and for the stop ids (a --no-stop run on ids reads none).
  std::unique_ptr<PromptFormat> format;
  if (tokenizer && (options.chat || options.stop)) {
    format = std::make_unique<PromptFormat>(*tokenizer, loaded.text.template_name, loaded.text.tokenizer);
  }

  std::vector<std::vector<std::int64_t>> prompts = file.ids;
  for (const std::string& text : texts) {
    std::vector<TokenId> ids;
    if (options.chat) {
      ids = format->test_prompt(text);
    } else {
      // The prompt is ordinary text (special-token text stays text); bos first, as the templates do.
      if (tokenizer->bos_id() >= 0) ids.push_back(tokenizer->bos_id());
      for (TokenId id : tokenizer->encode(text)) ids.push_back(id);
    }
    prompts.emplace_back(ids.begin(), ids.end());
  }
  if (!options.prompt_ids.empty()) prompts.push_back(parse_id_list(options.prompt_ids));
  // Bounds before any memory is touched: positions, and the prefill's scores.
  for (const auto& prompt : prompts) {
    validate_generation_request(model.config(), static_cast<std::int64_t>(prompt.size()),
                                options.generation.max_new_tokens);
  }
  GenerationOptions generation = options.generation;
  // The stop tokens: the model config's eos ids (what transformers stops at)
  // and, with a tokenizer, the ones eval stops at (PromptFormat's).
  generation.stop_on_eos = options.stop;
  if (options.stop && format) generation.stop_ids.assign(format->stop_ids().begin(), format->stop_ids().end());
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
    // The stop token that ended the sequence is printed last.
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
