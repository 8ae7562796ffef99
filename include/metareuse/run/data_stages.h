// The pipeline's torch-free stages, each from its typed options to its output
// file: patterns (handbook.json), augment (augmented.jsonl) and prepare
// (dataset.h5). `metareuse run` (through run/resolve.h) and the single-stage
// commands (`metareuse patterns`, `augment`, `prepare`) build the options with
// the *_stage_options functions below, the one place each stage's config keys
// are read, and call the stages. A stage reads its options and writes its
// output; it never reads or writes the config. Collective.
#pragma once

#include <string>
#include <vector>

#include "metareuse/augment/augment.h"          // AugmentOptions
#include "metareuse/corpus/corpus.h"            // ReadOptions
#include "metareuse/dataset/dataset.h"          // PrepareOptions
#include "metareuse/patterns/miner.h"           // MiningOptions
#include "metareuse/patterns/phrasing.h"        // PhrasingOptions
#include "metareuse/patterns/reflect.h"         // ReflectOptions, StrategistOptions, StrategistFactory
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat

namespace metareuse {
class Config;
class Runtime;

// The decoding of `section` (patterns, generate, eval, distill): its
// max_new_tokens, batch_size, temperature and top_p (1 where the section has
// none), seeded by run.seed. Greedy is the section's own switch where it has
// one (eval.greedy, distill.greedy), else a temperature of 0.
GenerationOptions decoding_options(const Config& config, const std::string& section);

// corpus.fields: the names a record's roles have (eval and distill read them too).
FieldNames corpus_field_names(const Config& config);
// corpus.fields and corpus.max_depth as read options.
ReadOptions corpus_read_options(const Config& config);

enum class HandbookSource { kMine, kReflect, kImport };

struct PatternsStageOptions {
  std::vector<std::string> corpus_files;  // corpus.files, globs as given (expanded when the stage runs)
  HandbookSource source = HandbookSource::kMine;
  std::string import_path;                // kImport: patterns.import
  MiningOptions mining;                   // kMine
  ReflectOptions reflect;                 // kReflect
  // kReflect: the model that writes behaviors; kMine: the model that phrases
  // each mined pattern as a behavior (strategist.model "": none)
  StrategistOptions strategist;
  PhrasingOptions phrasing;               // kMine with a model
  std::vector<std::string> holdout;       // patterns.holdout
  ReadOptions read;                       // the holdout's too
  bool strict = false;                    // corpus.strict
  std::string handbook;                   // the file written
};

// patterns.*, corpus.*, and with patterns.model (reflect mode needs one)
// tokenizer.path/.template and run.seed. Checks what needs no corpus (the
// mode's keys, the reflect prompt).
PatternsStageOptions patterns_stage_options(const Config& config, const std::string& handbook_path);

struct AugmentStageOptions {
  std::vector<std::string> corpus_files;
  AugmentOptions augment;
  bool strict = false;
  std::string handbook;  // read
  std::string out;       // written
};

AugmentStageOptions augment_stage_options(const Config& config, const std::string& handbook_path,
                                          const std::string& out_path);

// The tokenizer and template training uses: tokenizer.path and
// tokenizer.template resolved against model.path (prompt_format.h's rule).
// The tokenizer is "" for a from-scratch model without tokenizer.path.
// model.path must be a folder, and without tokenizer.path it must hold its
// own tokenizer (InputError naming each file looked for): a pretrained model
// never gets a tokenizer trained here.
TextFormat training_text_format(const Config& config);

// dataset.* with `text` (training_text_format, or the run's own tokenizer);
// the dataset records config.dump(). Throws UsageError without input or tokenizer.
PrepareOptions prepare_stage_options(const Config& config, const TextFormat& text, const std::string& input,
                                     const std::string& output);

// Mines corpus.files per patterns.* (or imports patterns.import), reports the
// coverage of patterns.holdout, and writes the handbook (rank 0). Returns
// kExitBadRecords when corpus.strict is set and the corpus has bad lines.
// Reflect mode, and mining with patterns.model (which then phrases each
// pattern, phrasing.h), ask `make_strategist` (the torch binary's
// make_model_strategist) for the model; without one it is a UsageError.
int patterns_stage(const PatternsStageOptions& options, Runtime& runtime,
                   const StrategistFactory& make_strategist = {});

// Writes the training examples of the corpus with the handbook's patterns.
// Returns kExitBadRecords like patterns_stage.
int augment_stage(const AugmentStageOptions& options, Runtime& runtime);

// Tokenizes the examples into the HDF5 dataset.
int prepare_stage(const PrepareOptions& options, Runtime& runtime);

}  // namespace metareuse
