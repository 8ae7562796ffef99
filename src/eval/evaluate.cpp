// Prompts, generation with stop tokens, the distributed evaluation loop, summaries.
#include "metareuse/eval/evaluate.h"

#include <fmt/format.h>
#include <torch/torch.h>  // NoGradGuard, tensors

#include <algorithm>
#include <random>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/text.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/model/generate.h"

namespace metareuse::eval {

PromptBuilder::PromptBuilder(const patterns::Handbook* handbook, bool use_patterns, augment::AugmentMode mode,
                             std::size_t top_k, double bm25_k1, double bm25_b,
                             const augment::PatternContexts* contexts)
    : handbook_(handbook),
      use_patterns_(use_patterns && handbook != nullptr && mode != augment::AugmentMode::kNone),
      mode_(mode),
      top_k_(top_k) {
  if (!use_patterns_) return;
  if (mode == augment::AugmentMode::kUsed) {
    if (contexts == nullptr) throw InputError("augment mode used: eval needs the pattern contexts (augmented examples)");
    context_index_.emplace(handbook->patterns, *contexts, bm25_k1, bm25_b);
    return;
  }
  // The same choice as augment_corpus: the top k patterns, or BM25's best k.
  std::vector<const patterns::Pattern*> global;
  for (std::size_t i = 0; i < handbook->patterns.size() && i < top_k; ++i) global.push_back(&handbook->patterns[i]);
  global_prefix_ = augment::pattern_prefix(global);
  if (mode == augment::AugmentMode::kRetrieval) index_.emplace(handbook->patterns, bm25_k1, bm25_b);
}

std::string PromptBuilder::prompt_text(const std::string& question) const {
  std::string prefix = use_patterns_ ? global_prefix_ : std::string();
  if (use_patterns_ && context_index_) {
    std::vector<std::size_t> best = context_index_->retrieve(question, top_k_);
    std::sort(best.begin(), best.end());  // handbook order, as augment lists an example's patterns
    std::vector<const patterns::Pattern*> chosen;
    for (std::size_t i : best) chosen.push_back(&handbook_->patterns[i]);
    return augment::pattern_prefix(chosen) + question + "\n";
  }
  if (use_patterns_ && index_) {
    std::vector<std::size_t> best = index_->retrieve(question, top_k_);
    if (!best.empty()) {
      std::vector<const patterns::Pattern*> chosen;
      for (std::size_t i : best) chosen.push_back(&handbook_->patterns[i]);
      prefix = augment::pattern_prefix(chosen);
    }
  }
  return prefix + question + "\n";
}

std::vector<TokenId> prompt_ids(const Tokenizer& tokenizer, const std::string& template_name,
                                const std::string& prompt_text) {
  if (template_name == "chat") {
    return apply_chat_template(tokenizer, {{"user", prompt_text, false}}, /*add_generation_prompt=*/true).ids;
  }
  if (template_name != "plain") throw InputError(fmt::format("unknown template '{}' (chat or plain)", template_name));
  // apply_plain_template without the target: bos + prompt (the target follows at the same token boundary).
  std::vector<TokenId> ids;
  if (tokenizer.bos_id() >= 0) ids.push_back(tokenizer.bos_id());
  std::vector<TokenId> prompt = tokenizer.encode(prompt_text);
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  return ids;
}

std::vector<TokenId> stop_ids(const Tokenizer& tokenizer, const std::string& template_name) {
  std::vector<TokenId> stops;
  if (template_name == "chat") {
    if (auto end_of_turn = tokenizer.special_id("<|eot_id|>")) stops.push_back(*end_of_turn);
  }
  if (tokenizer.eos_id() >= 0) stops.push_back(tokenizer.eos_id());
  return stops;
}

Generation generate_answer(const LlamaModel& model, const std::vector<TokenId>& prompt,
                           const std::vector<TokenId>& stops, const EvalOptions& options, std::int64_t question_index) {
  const std::int64_t vocab = model.config().vocab_size;
  if (prompt.empty()) throw InputError("an empty prompt");
  for (TokenId id : prompt) {
    if (id < 0 || id >= vocab) {
      throw InputError(fmt::format("prompt token {} is outside the model's vocabulary [0, {}): is the tokenizer the "
                                   "one the model was trained with?",
                                   id, vocab));
    }
  }
  GenerationOptions pick;
  pick.greedy = options.greedy;
  pick.temperature = options.temperature;
  pick.top_p = options.top_p;
  // One generator per question, so an answer does not depend on which rank draws it.
  std::seed_seq seeds{static_cast<std::uint32_t>(options.seed), static_cast<std::uint32_t>(options.seed >> 32),
                      static_cast<std::uint32_t>(question_index)};
  std::mt19937_64 engine(seeds);
  auto uniform = [&engine] { return static_cast<double>(engine() >> 11) * 0x1.0p-53; };  // [0, 1)

  torch::NoGradGuard no_grad;
  Generation result;
  if (options.max_new_tokens <= 0) return result;
  std::vector<std::int64_t> prompt64(prompt.begin(), prompt.end());
  KvCache cache = model.make_cache(1, static_cast<std::int64_t>(prompt.size()) + options.max_new_tokens);
  torch::Tensor logits = model.forward(torch::tensor(prompt64, torch::kInt64).view({1, -1}), &cache);  // (1, T, V)
  for (std::int64_t step = 0; step < options.max_new_tokens; ++step) {
    torch::Tensor last = logits[0][logits.size(1) - 1];  // (V,)
    const std::int64_t next = pick_token(last, pick, options.greedy ? 0.0 : uniform());
    if (std::find(stops.begin(), stops.end(), static_cast<TokenId>(next)) != stops.end()) {
      result.stopped = true;
      break;
    }
    result.ids.push_back(static_cast<TokenId>(next));
    if (step + 1 < options.max_new_tokens) {
      logits = model.forward(torch::tensor(std::vector<std::int64_t>{next}, torch::kInt64).view({1, 1}), &cache);
    }
  }
  return result;
}

namespace {

// Results travel between ranks as JSON lines (a few hundred bytes each).
nlohmann::json to_wire(const QuestionResult& r) {
  return {{"index", r.index},         {"line", r.line},
          {"question", r.question},   {"reference", r.reference}, {"prompt", r.prompt},
          {"output", r.output},       {"answer", r.answer ? nlohmann::json(*r.answer) : nlohmann::json(nullptr)},
          {"correct", r.correct},     {"prompt_tokens", r.prompt_tokens},
          {"generated", r.generated_tokens}, {"reasoning_tokens", r.reasoning_tokens}, {"stopped", r.stopped},
          {"steps", r.reasoning_steps}, {"patterns", r.patterns_used},
          {"seconds", r.seconds}};
}

QuestionResult from_wire(const nlohmann::json& j) {
  QuestionResult r;
  r.index = j.at("index");
  r.line = j.at("line");
  r.question = j.at("question");
  r.reference = j.at("reference");
  r.prompt = j.at("prompt");
  r.output = j.at("output");
  if (!j.at("answer").is_null()) r.answer = j.at("answer").get<std::string>();
  r.correct = j.at("correct");
  r.prompt_tokens = j.at("prompt_tokens");
  r.generated_tokens = j.at("generated");
  r.reasoning_tokens = j.at("reasoning_tokens");
  r.stopped = j.at("stopped");
  r.reasoning_steps = j.at("steps");
  r.patterns_used = j.at("patterns").get<std::vector<std::size_t>>();
  r.seconds = j.at("seconds");
  return r;
}

}  // namespace

nlohmann::ordered_json QuestionResult::to_json(const std::string& role, const patterns::Handbook* handbook) const {
  nlohmann::ordered_json j;
  j["model"] = role;
  j["index"] = index;
  j["line"] = line;
  j["question"] = question;
  j["reference"] = reference;
  j["answer"] = answer ? nlohmann::ordered_json(*answer) : nlohmann::ordered_json(nullptr);
  j["correct"] = correct;
  j["prompt_tokens"] = prompt_tokens;
  j["generated_tokens"] = generated_tokens;
  j["reasoning_tokens"] = reasoning_tokens;
  j["stopped"] = stopped ? "stop_token" : "max_new_tokens";
  j["reasoning_steps"] = reasoning_steps;
  std::vector<std::string> texts;
  for (std::size_t i : patterns_used) {
    texts.push_back(handbook != nullptr && i < handbook->patterns.size() ? handbook->patterns[i].text
                                                                          : std::to_string(i));
  }
  j["patterns_used"] = texts;
  j["seconds"] = seconds;
  j["prompt"] = prompt;
  j["output"] = output;
  return j;
}

std::vector<QuestionResult> evaluate_questions(const LlamaModel& model, const Tokenizer& tokenizer,
                                               const std::vector<Question>& questions, const PromptBuilder& prompts,
                                               const PatternMatcher& matcher, const EvalOptions& options,
                                               Communicator& communicator) {
  const int rank = communicator.rank();
  const int ranks = communicator.size();
  const std::vector<TokenId> stops = stop_ids(tokenizer, options.template_name);
  std::string wire;  // this rank's results, one JSON object per line
  std::int64_t done = 0, mine = 0;
  for (std::size_t i = rank; i < questions.size(); i += ranks) ++mine;
  for (std::size_t i = rank; i < questions.size(); i += static_cast<std::size_t>(ranks)) {
    const Question& question = questions[i];
    Stopwatch watch;
    QuestionResult result;
    result.index = static_cast<std::int64_t>(i);
    result.line = question.line;
    result.question = question.question;
    result.reference = question.reference;
    result.prompt = prompts.prompt_text(question.question);
    std::vector<TokenId> prompt = prompt_ids(tokenizer, options.template_name, result.prompt);
    result.prompt_tokens = static_cast<std::int64_t>(prompt.size());
    Generation generation = generate_answer(model, prompt, stops, options, result.index);
    result.output = tokenizer.decode(generation.ids);
    result.generated_tokens = static_cast<std::int64_t>(generation.ids.size());
    result.stopped = generation.stopped;
    result.answer = extract_final_answer(result.output);
    result.correct = result.answer && answers_match(*result.answer, question.reference);
    result.reasoning_steps = count_reasoning_steps(result.output);
    result.reasoning_tokens =
        static_cast<std::int64_t>(tokenizer.encode(std::string(trim_ascii(reasoning_part(result.output)))).size());
    result.patterns_used = matcher.find(result.output);
    result.seconds = watch.seconds();
    wire += to_wire(result).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    wire += '\n';
    ++done;
    log::debug("question {} ({}/{} on this rank): {} tokens, {}", i, done, mine, result.generated_tokens,
               result.correct ? "correct" : "wrong");
  }
  std::vector<char> local(wire.begin(), wire.end());
  std::vector<char> all = communicator.allgatherv(local);
  std::vector<QuestionResult> results;
  if (rank != 0) return results;
  std::string_view text(all.data(), all.size());
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) results.push_back(from_wire(nlohmann::json::parse(text.substr(start, end - start))));
    start = end + 1;
  }
  std::sort(results.begin(), results.end(),
            [](const QuestionResult& a, const QuestionResult& b) { return a.index < b.index; });
  return results;
}

nlohmann::ordered_json summarize(const std::vector<QuestionResult>& results) {
  std::vector<double> tokens, reasoning_tokens, steps, patterns_per_answer;
  double correct = 0, answered = 0, with_pattern = 0, stopped = 0, seconds = 0;
  for (const auto& r : results) {
    tokens.push_back(static_cast<double>(r.generated_tokens));
    reasoning_tokens.push_back(static_cast<double>(r.reasoning_tokens));
    steps.push_back(static_cast<double>(r.reasoning_steps));
    patterns_per_answer.push_back(static_cast<double>(r.patterns_used.size()));
    correct += r.correct ? 1 : 0;
    answered += r.answer ? 1 : 0;
    with_pattern += r.patterns_used.empty() ? 0 : 1;
    stopped += r.stopped ? 1 : 0;
    seconds += r.seconds;
  }
  const double n = static_cast<double>(results.size());
  auto rate = [n](double count) { return n == 0 ? 0.0 : count / n; };
  double total_tokens = 0;
  for (double t : tokens) total_tokens += t;
  nlohmann::ordered_json summary;
  summary["questions"] = results.size();
  summary["correct"] = static_cast<std::int64_t>(correct);
  summary["accuracy"] = rate(correct);
  summary["answered_rate"] = rate(answered);
  summary["mean_generated_tokens"] = mean_of(tokens);
  summary["median_generated_tokens"] = median_of(tokens);
  summary["mean_reasoning_tokens"] = mean_of(reasoning_tokens);
  summary["median_reasoning_tokens"] = median_of(reasoning_tokens);
  summary["mean_reasoning_steps"] = mean_of(steps);
  summary["median_reasoning_steps"] = median_of(steps);
  summary["pattern_use_rate"] = rate(with_pattern);
  summary["mean_patterns_per_answer"] = mean_of(patterns_per_answer);
  summary["stopped_rate"] = rate(stopped);
  summary["seconds"] = seconds;  // summed over questions (all ranks)
  summary["tokens_per_s"] = seconds > 0 ? total_tokens / seconds : 0.0;
  return summary;
}

nlohmann::ordered_json compare_summaries(const nlohmann::json& model, const nlohmann::json& baseline) {
  nlohmann::ordered_json change;
  for (const char* key : {"accuracy", "mean_generated_tokens", "median_generated_tokens", "mean_reasoning_tokens",
                          "median_reasoning_tokens", "mean_reasoning_steps",
                          "median_reasoning_steps", "pattern_use_rate", "mean_patterns_per_answer"}) {
    auto value = relative_change(model.at(key).get<double>(), baseline.at(key).get<double>());
    change[key] = value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json(nullptr);
  }
  change["accuracy_points"] = 100.0 * (model.at("accuracy").get<double>() - baseline.at("accuracy").get<double>());
  return change;
}

}  // namespace metareuse::eval
