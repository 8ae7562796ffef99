// Prompts, generation with stop tokens, the distributed evaluation loop, summaries.
#include "metareuse/eval/evaluate.h"

#include <fmt/format.h>
#include <torch/torch.h>  // NoGradGuard, tensors

#include <algorithm>
#include <array>
#include <map>
#include <random>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/text.h"
#include "metareuse/core/timing.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/model/generate.h"
#include "metareuse/tokenizer/prompt_format.h"

namespace metareuse {

std::vector<Generation> generate_answers(const LlamaModel& model, const std::vector<std::vector<TokenId>>& prompts,
                                         const std::vector<TokenId>& stops, const EvalOptions& options,
                                         const std::vector<std::int64_t>& question_indices) {
  const std::int64_t vocab = model.config().vocab_size;
  std::vector<std::vector<std::int64_t>> prompts64;
  for (const auto& prompt : prompts) {
    if (prompt.empty()) throw InputError("an empty prompt");
    for (TokenId id : prompt) {
      if (id < 0 || id >= vocab) {
        throw InputError(fmt::format("prompt token {} is outside the model's vocabulary [0, {}): is the tokenizer the "
                                     "one the model was trained with?",
                                     id, vocab));
      }
    }
    prompts64.emplace_back(prompt.begin(), prompt.end());
  }
  GenerationOptions generation;
  generation.max_new_tokens = options.max_new_tokens;
  generation.greedy = options.greedy;
  generation.temperature = options.temperature;
  generation.top_p = options.top_p;
  generation.seed = options.seed;
  generation.stop_ids.assign(stops.begin(), stops.end());
  // The question index seeds each answer's sampling, so an answer does not depend on its batch or rank.
  std::vector<std::uint64_t> sequence_ids(question_indices.begin(), question_indices.end());
  std::vector<Generation> answers;
  for (const Generated& generated : generate_batch(model, prompts64, generation, sequence_ids)) {
    Generation answer;
    answer.ids.assign(generated.ids.begin(), generated.ids.end());
    answer.stopped = generated.stop >= 0;
    answers.push_back(std::move(answer));
  }
  return answers;
}

std::vector<AnswerRecord> evaluate_questions(const LlamaModel& model, const Tokenizer& tokenizer,
                                             const std::vector<Question>& questions, const PromptPolicy& prompts,
                                             const PatternMatcher& matcher, const EvalOptions& options,
                                             Communicator& communicator, const std::vector<std::int64_t>& indices) {
  if (!indices.empty() && indices.size() != questions.size()) {
    throw Error(fmt::format("evaluate_questions: {} indices for {} questions", indices.size(), questions.size()));
  }
  const int rank = communicator.rank();
  const int ranks = communicator.size();
  const PromptFormat format(tokenizer, options.template_name, options.tokenizer_path);
  const std::vector<TokenId>& stops = format.stop_ids();
  std::string wire;  // this rank's answers, AnswerRecord lines
  std::vector<std::size_t> shard;  // this rank's questions
  for (std::size_t i = rank; i < questions.size(); i += static_cast<std::size_t>(ranks)) shard.push_back(i);
  const std::size_t batch_size = static_cast<std::size_t>(std::max<std::int64_t>(options.batch_size, 1));
  for (std::size_t first = 0; first < shard.size(); first += batch_size) {
    const std::size_t count = std::min(batch_size, shard.size() - first);
    Stopwatch watch;
    std::vector<AnswerRecord> batch(count);
    std::vector<std::vector<TokenId>> batch_prompts;
    std::vector<std::int64_t> batch_indices;
    for (std::size_t b = 0; b < count; ++b) {
      const Question& question = questions[shard[first + b]];
      AnswerRecord& result = batch[b];
      result.index = indices.empty() ? static_cast<std::int64_t>(shard[first + b]) : indices[shard[first + b]];
      result.line = question.line;
      result.question = question.question;
      result.reference = question.reference;
      const PromptChoice choice = prompts.for_test(question.question);
      result.prompt = PromptPolicy::prompt(choice, question.question);
      for (const Pattern* shown : choice.patterns) result.patterns_shown.push_back(shown->name);
      batch_prompts.push_back(format.test_prompt(result.prompt));
      result.prompt_tokens = static_cast<std::int64_t>(batch_prompts.back().size());
      batch_indices.push_back(result.index);
    }
    std::string failure;
    try {
      std::vector<Generation> generations = generate_answers(model, batch_prompts, stops, options, batch_indices);
      // Filled in a copy: a failure part way leaves the batch as it was before generation.
      std::vector<AnswerRecord> answered = batch;
      for (std::size_t b = 0; b < count; ++b) {
        AnswerRecord& result = answered[b];
        const Question& question = questions[shard[first + b]];
        const Generation& generation = generations[b];
        result.output = tokenizer.decode(generation.ids);
        result.generated_tokens = static_cast<std::int64_t>(generation.ids.size());
        result.stopped = generation.stopped;
        const AnswerCheck check = check_answer(result.output, question.reference, question.answer_rule);
        result.answer = check.strict_answer;
        result.correct = check.strict;
        result.flexible_answer = check.flexible_answer;
        result.correct_flexible = check.flexible;
        result.reasoning_steps = count_reasoning_steps(result.output);
        result.reasoning_tokens =
            static_cast<std::int64_t>(tokenizer.encode(std::string(trim_ascii(reasoning_part(result.output)))).size());
        for (std::size_t i : matcher.find(result.output)) result.patterns_used.push_back(matcher.name(i));
      }
      batch = std::move(answered);
    } catch (const InputError&) {
      throw;
    } catch (const ConfigError&) {
      throw;
    } catch (const UsageError&) {
      throw;
    } catch (const std::exception& error) {
      failure = error.what();
    }
    // The batch's time, shared evenly: its answers were generated together.
    const double seconds = watch.seconds() / static_cast<double>(count);
    if (!failure.empty()) {
      log_warn("the generation of a batch of {} question(s) failed; they are recorded as failed: {}", count, failure);
    }
    for (std::size_t b = 0; b < count; ++b) {
      AnswerRecord& result = batch[b];
      result.error = failure;
      result.seconds = seconds;
      wire += result.to_line();
    }
    log_debug("questions {}/{} on this rank: a batch of {} in {:.2f} s", first + count, shard.size(), count,
               seconds * static_cast<double>(count));
  }
  std::vector<char> local(wire.begin(), wire.end());
  std::vector<char> all = communicator.allgatherv(local);
  std::vector<AnswerRecord> results;
  if (rank != 0) return results;
  std::string_view text(all.data(), all.size());
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) {
      results.push_back(AnswerRecord::from_json(nlohmann::json::parse(text.substr(start, end - start))));
    }
    start = end + 1;
  }
  std::sort(results.begin(), results.end(),
            [](const AnswerRecord& a, const AnswerRecord& b) { return a.index < b.index; });
  return results;
}

Summary summarize(const std::vector<AnswerRecord>& results) {
  std::vector<double> tokens, prompt_tokens, read_and_written, reasoning_tokens, steps, patterns_per_answer;
  double correct = 0, correct_flexible = 0, failed = 0, answered = 0, with_pattern = 0, stopped = 0, seconds = 0;
  for (const auto& r : results) {
    tokens.push_back(static_cast<double>(r.generated_tokens));
    prompt_tokens.push_back(static_cast<double>(r.prompt_tokens));
    read_and_written.push_back(static_cast<double>(r.prompt_tokens + r.generated_tokens));
    reasoning_tokens.push_back(static_cast<double>(r.reasoning_tokens));
    steps.push_back(static_cast<double>(r.reasoning_steps));
    patterns_per_answer.push_back(static_cast<double>(r.patterns_used.size()));
    correct += r.correct ? 1 : 0;
    correct_flexible += r.correct_flexible ? 1 : 0;
    failed += r.error.empty() ? 0 : 1;
    answered += r.answer ? 1 : 0;
    with_pattern += r.patterns_used.empty() ? 0 : 1;
    stopped += r.stopped ? 1 : 0;
    seconds += r.seconds;
  }
  const double n = static_cast<double>(results.size());
  auto rate = [n](double count) { return n == 0 ? 0.0 : count / n; };
  double generated = 0;
  for (double t : tokens) generated += t;
  Summary summary;
  summary.questions = static_cast<std::int64_t>(results.size());
  summary.correct = static_cast<std::int64_t>(correct);
  summary.failed = static_cast<std::int64_t>(failed);
  summary.correct_flexible = static_cast<std::int64_t>(correct_flexible);
  summary.accuracy = rate(correct);
  summary.accuracy_flexible = rate(correct_flexible);
  summary.answered_rate = rate(answered);
  summary.mean_generated_tokens = mean_of(tokens);
  summary.median_generated_tokens = median_of(tokens);
  summary.mean_prompt_tokens = mean_of(prompt_tokens);
  summary.mean_total_tokens = mean_of(read_and_written);
  summary.mean_reasoning_tokens = mean_of(reasoning_tokens);
  summary.median_reasoning_tokens = median_of(reasoning_tokens);
  summary.mean_reasoning_steps = mean_of(steps);
  summary.median_reasoning_steps = median_of(steps);
  summary.pattern_use_rate = rate(with_pattern);
  summary.mean_patterns_per_answer = mean_of(patterns_per_answer);
  summary.stopped_rate = rate(stopped);
  summary.seconds = seconds;
  summary.tokens_per_s = seconds > 0 ? generated / seconds : 0.0;
  return summary;
}

std::vector<BehaviorUse> behavior_use(const std::vector<AnswerRecord>& results, const Handbook& handbook) {
  const std::size_t P = handbook.patterns.size();
  std::vector<BehaviorUse> uses(P);
  // Per pattern and side (0: not applied, 1: applied): answers, correct ones, reasoning tokens.
  std::vector<std::array<double, 2>> answers(P, {0, 0}), correct(P, {0, 0}), tokens(P, {0, 0});
  std::map<std::string, std::size_t> by_name;  // handbook names are unique (the miners and the import make them so)
  for (std::size_t i = 0; i < P; ++i) by_name.emplace(handbook.patterns[i].name, i);
  for (const AnswerRecord& r : results) {
    std::vector<bool> applied(P, false);
    for (const std::string& name : r.patterns_used) {
      if (auto found = by_name.find(name); found != by_name.end()) applied[found->second] = true;
    }
    for (const std::string& name : r.patterns_shown) {
      if (auto found = by_name.find(name); found != by_name.end()) ++uses[found->second].retrieved;
    }
    for (std::size_t i = 0; i < P; ++i) {
      const int side = applied[i] ? 1 : 0;
      answers[i][side] += 1;
      correct[i][side] += r.correct ? 1 : 0;
      tokens[i][side] += static_cast<double>(r.reasoning_tokens);
    }
  }
  auto share = [](double part, double whole) { return whole > 0 ? std::optional<double>(part / whole) : std::nullopt; };
  for (std::size_t i = 0; i < P; ++i) {
    BehaviorUse& use = uses[i];
    use.name = handbook.patterns[i].name;
    use.instruction = handbook.patterns[i].instruction;
    use.applied = static_cast<std::int64_t>(answers[i][1]);
    use.accuracy_applied = share(correct[i][1], answers[i][1]);
    use.accuracy_not_applied = share(correct[i][0], answers[i][0]);
    use.mean_reasoning_tokens_applied = share(tokens[i][1], answers[i][1]);
    use.mean_reasoning_tokens_not_applied = share(tokens[i][0], answers[i][0]);
  }
  return uses;
}

}  // namespace metareuse
