// metareuse eval / report: answer held-out questions with a tuned model and a
// baseline, write eval.json and answers.jsonl; render a run's report.html.
#include "commands.h"
#include "flags.h"
#include "metareuse/core/error.h"
#include "metareuse/eval/distill.h"
#include "metareuse/eval/run_eval.h"
#include "metareuse/run/layout.h"
#include "metareuse/run/resolve.h"     // eval_command_options, distill_run_options, run_report_options
#include "metareuse/run/run_report.h"  // check_run_report, run_report

namespace metareuse::cli_detail {

void eval_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--model", "eval.model",
                 "Model: Hugging Face folder, checkpoint file, or checkpoint folder (latest) (eval.model)", overrides);
  add_value_flag(app, "--baseline", "eval.baseline", "Baseline model, same kinds as --model (eval.baseline)",
                 overrides);
  add_value_flag(app, "--questions", "eval.questions", "Held-out questions, JSON Lines (eval.questions)", overrides);
  add_value_flag(app, "--tokenizer", "tokenizer.path", "Tokenizer file (tokenizer.path)", overrides);
  add_value_flag(app, "--handbook", "eval.handbook", "Handbook for prompts and pattern use (eval.handbook)",
                 overrides);
  add_value_flag(app, "--max-new-tokens", "eval.max_new_tokens", "Token budget per answer (eval.max_new_tokens)",
                 overrides);
  add_value_flag(app, "--batch-size", "eval.batch_size", "Answers generated together per rank (eval.batch_size)",
                 overrides);
  auto* greedy = app.add_flag_callback(
      "--greedy", [&overrides] { overrides.push_back("eval.greedy=true"); }, "Greedy decoding (the default)");
  auto* temperature = app.add_option_function<std::string>(
      "--temperature",
      [&overrides](const std::string& value) {
        overrides.push_back("eval.greedy=false");
        overrides.push_back("eval.temperature=" + value);
      },
      "Sample with this temperature (eval.temperature; sets eval.greedy=false)");
  auto* top_p = app.add_option_function<std::string>(
      "--top-p", [&overrides](const std::string& value) { overrides.push_back("eval.top_p=" + value); },
      "Sampling nucleus (eval.top_p)");
  auto* seed = app.add_option_function<std::string>(
      "--seed", [&overrides](const std::string& value) { overrides.push_back("run.seed=" + value); },
      "Sampling seed (run.seed)");
  greedy->excludes(temperature)->excludes(top_p)->excludes(seed);
  add_value_flag(app, "--limit", "eval.limit", "Evaluate the first N questions (eval.limit)", overrides);
  add_value_flag(app, "--out", "eval.out", "Output folder (eval.out; default <run folder>/eval, a checkpoint's own run folder for --model <checkpoint>)", overrides);
}

int eval_run(CommandContext& context) {
  return run_evaluation(eval_command_options(context.config), context.runtime.world());
}

void distill_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--teacher", "distill.teacher",
                 "Teacher: Hugging Face folder, checkpoint file, or checkpoint folder (distill.teacher; default: the "
                 "run's checkpoints)",
                 overrides);
  add_list_flag(app, "--corpus", "corpus.files", "JSON Lines corpus file or glob (repeatable)", overrides);
  add_value_flag(app, "--handbook", "distill.handbook", "Handbook whose behaviors prompt the teacher (distill.handbook)",
                 overrides);
  add_value_flag(app, "--tokenizer", "tokenizer.path", "Tokenizer file (tokenizer.path)", overrides);
  add_value_flag(app, "--limit", "distill.limit", "Answer the first N questions (distill.limit)", overrides);
  add_value_flag(app, "--samples", "distill.samples", "Answers per question (distill.samples)", overrides);
  add_value_flag(app, "--max-new-tokens", "distill.max_new_tokens", "Token budget per answer (distill.max_new_tokens)",
                 overrides);
  add_value_flag(app, "--batch-size", "distill.batch_size", "Answers generated together per rank (distill.batch_size)",
                 overrides);
  add_value_flag(app, "--out", "distill.out", "Training examples to write (distill.out; default <run folder>/distilled.jsonl)",
                 overrides);
}

int distill_run(CommandContext& context) {
  return run_distill(distill_run_options(context.config, RunLayout::for_config(context.config)),
                     context.runtime.world());
}

void report_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--run", "run.out_dir", "Run folder (run.out_dir; default: runs/<run.name>)", overrides);
  add_value_flag(app, "--out", "report.out", "HTML file to write (report.out; default: <run folder>/report.html)",
                 overrides);
  add_switch_flag(app, "--watch", "report.watch", "true",
                  "Rewrite the report every --interval seconds while a job writes the run; exit when it ends "
                  "(report.watch)",
                  overrides);
  add_value_flag(app, "--interval", "report.interval", "Seconds between rewrites with --watch (report.interval)",
                 overrides)
      ->check(positive_number());
}

int report_run(CommandContext& context) {
  const RunReportOptions options = run_report_options(context.config);
  check_run_report(options);
  if (context.runtime.rank() != 0) return kExitOk;
  run_report(options);
  return kExitOk;
}

}  // namespace metareuse::cli_detail
