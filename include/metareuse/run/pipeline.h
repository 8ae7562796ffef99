// `metareuse run`: the pipeline, stage by stage, in one run folder (layout.h):
//   patterns -> augment -> prepare (a sentencepiece tokenizer is trained on the
//   augmented examples when tokenizer.path is empty) -> train -> checkpoint
//   (the final checkpoint is verified) -> eval -> export.
// The config is resolved once first (resolve.h): every stage's options; no
// stage writes to the config. The train stage writes what its training used
// to <run>/config.resolved.json once that training has started. Each finished
// stage records a fingerprint (the config keys its options were built from,
// and its input files) in <run>/stages.json; a later
// run skips a stage whose fingerprint and outputs are unchanged, so re-running
// after a stop resumes the pipeline.
// With experiment.baseline the run also trains a baseline from scratch
// on the unaugmented corpus (augment mode none, the run's tokenizer, the same
// model, steps, batch and seed) in <run>/baseline, and eval writes three
// entries: baseline, reuse (the run's model prompted with patterns) and
// control (the same model prompted without them).
#pragma once

#include <string>

namespace metareuse {
class Config;
class Runtime;

struct PipelineOptions {
  std::string from;  // run from this stage on, even if its outputs are up to date
  std::string only;  // run only this stage
};

// Collective. Returns an exit status: kExitOk, a stage's status (kExitTimeLimit
// when training stopped early or SIGUSR1 arrived between stages; the next run
// resumes). Throws UsageError for an unknown --from/--only stage, InputError
// when corpus.strict is set and the corpus has bad lines.
int run_pipeline(const Config& given, Runtime& runtime, const PipelineOptions& options);

// `metareuse train`: resolve_training, then training (which writes the resolved config into the run folder).
int train_in_run_folder(const Config& given, Runtime& runtime);

}  // namespace metareuse
