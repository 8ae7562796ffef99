// The distill stage: the training data of behavior-conditioned SFT (BC-SFT,
// Didolkar et al. 2025). A teacher, prompted with the handbook behaviors that
// eval would retrieve for each training question, answers the corpus's
// questions; an answer whose final answer matches the record's solution
// becomes a training example whose prompt is the bare question. A student
// trained on those examples learns the teacher's behavior-guided reasoning
// without paying for the behaviors in its prompt at test time.
//
// Files (every path comes in the options):
//   answers   every teacher answer, one JSON object per line, appended and
//             flushed as each round of batches finishes; its first line names
//             the teacher and the options, so a stopped distill resumes from
//             the answers already there (and starts over when they came from
//             another teacher or other options)
//   out       the training examples (augmented.jsonl's keys, so `prepare`
//             reads it), each with its provenance: the teacher, the behaviors
//             its prompt showed, and that the answer was right. Written
//             whole, only when at least one answer was right.
//   summary   distill.json: the counts below
//
// Distribution: each rank answers its share of every round's questions
// (evaluate_questions); rank 0 appends them. Greedy answers, and seeded
// sampled ones (seeded by question and sample), are the same at any rank count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/corpus/corpus.h"  // FieldNames
#include "metareuse/eval/eval_options.h"

namespace metareuse {
class Communicator;

struct DistillOptions {
  std::string teacher;                    // a Hugging Face folder, a checkpoint file or folder
  std::vector<std::string> corpus_files;  // the training questions (globs expanded when it runs)
  FieldNames fields;                      // corpus.fields
  std::int64_t limit = 0;                 // the first N questions over the files; 0: all
  std::int64_t samples = 1;               // answers per question (1 when greedy)
  // The teacher's prompts: the handbook's behaviors retrieved as eval does.
  std::string handbook;
  std::string contexts;  // augment.mode used: the augmented examples
  std::string augment_mode = "global";
  std::size_t top_k = 8;
  double bm25_k1 = 1.2;
  double bm25_b = 0.75;
  std::string tokenizer;     // "" : the teacher's own
  EvalOptions generation;    // the template (auto: the teacher's), decoding, batch size per rank
  std::int64_t max_sequence = 0;  // examples longer than this (the student's dataset.sequence_length) are dropped
  double time_limit = 0;     // seconds; stops after the round that passes it (exit 3, resumable). 0: none
  std::string out;
  std::string answers;
  std::string summary;
};

struct DistillCounts {
  std::int64_t questions = 0;
  std::int64_t generated = 0;           // answers (questions x samples)
  std::int64_t correct = 0;
  std::int64_t kept = 0;                // training examples written
  std::int64_t duplicates = 0;          // right answers identical to one already kept for the question
  std::int64_t dropped_for_length = 0;  // right answers longer than max_sequence tokens
  std::int64_t unfinished = 0;          // answers that hit max_new_tokens
  std::int64_t failed = 0;              // answers whose generation failed (recorded with the error, never right)
  std::int64_t resumed = 0;             // answers read back from an earlier, stopped distill
};

// Checks what needs no file: a teacher, corpus files, samples >= 1 (1 when greedy).
void check_distill_options(const DistillOptions& options);

// Collective. kExitOk with the files written; kExitTimeLimit when the time
// limit or a stop signal (SIGTERM, SIGUSR1, SIGINT) ended it between rounds,
// with the answers so far kept for the next run. A teacher with no right
// answer is an InputError, and no training file is written.
int run_distill(const DistillOptions& options, Communicator& communicator, DistillCounts* counts = nullptr);

}  // namespace metareuse
