// The eval stage: models answer held-out questions, and their results go to
// eval.json (EvalFile) and answers.jsonl in an output folder. `metareuse
// eval` and the pipeline's eval stage both run it, with options resolved from
// the config by run/resolve.h (eval_run_options); every path comes in the
// options, so eval names no file of a run folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/corpus/corpus.h"  // FieldNames
#include "metareuse/eval/eval_file.h"
#include "metareuse/eval/eval_options.h"

namespace metareuse {
class Communicator;

// One model to evaluate: its name in eval.json, its path (a Hugging Face
// folder, a checkpoint file or folder), and whether its prompts carry
// handbook patterns (a baseline, the reuse model, its control without them).
struct EvalModel {
  std::string role;
  std::string path;
  bool patterns = true;
};

struct EvalRunOptions {
  std::vector<EvalModel> models;
  std::string questions;       // JSON Lines of held-out questions
  FieldNames fields;           // corpus.fields: the same names as training's records
  std::int64_t limit = 0;      // the first N questions (0: all)
  std::string out_dir;         // created; eval_file and answers go in it
  std::string eval_file;       // eval.json (EvalFile)
  std::string answers;         // answers.jsonl (one AnswerRecord per question and model)
  // The answer log (core/answer_log.h) of an eval not yet finished: each
  // round's answers (AnswerRecord lines, as answers.jsonl's), read back by the
  // next run; removed once answers and eval_file are written.
  std::string partial_answers;
  double time_limit = 0;       // seconds; stops after the round that passes it (exit 3, resumable). 0: none
  std::string handbook;        // for prompts and pattern use ("" : none)
  bool handbook_if_exists = false;  // the run's handbook by default: used only when the file exists when eval runs
  // The default model, the run's own checkpoint folder ("" : eval.model was
  // given): when eval runs, it must hold a checkpoint.
  std::string run_checkpoints;
  std::string contexts;        // used mode: the augmented examples (pattern contexts)
  std::string augment_mode = "global";  // the prompts' augment mode, as the config names it
  std::size_t top_k = 8;
  double bm25_k1 = 1.2;
  double bm25_b = 0.75;
  std::string tokenizer;       // tokenizer.path; "" : each model's own (resolve_text_format)
  EvalOptions generation;      // its template is tokenizer.template (auto: each model's own)
};

// Collective: every model answers every question (questions spread over the
// ranks, in rounds of every rank's batch); rank 0 appends each round's
// answers to partial_answers, and at the end writes answers.jsonl and
// eval.json into out_dir, prints the table, and gets the file in `file` (the
// other ranks an empty one). kExitOk when done; kExitTimeLimit when the time
// limit or a stop signal (SIGTERM, SIGUSR1, SIGINT) ended it between rounds,
// with the answers so far kept for the next run, which goes on from them.
int run_evaluation(const EvalRunOptions& options, Communicator& communicator, EvalFile* file = nullptr);

// The table people read: one row per model, and each change against the baseline.
std::string format_eval_table(const EvalFile& file);

}  // namespace metareuse
