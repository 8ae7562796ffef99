// The pipeline's torch-free stages, each from the config to its output file:
// patterns (handbook.json), augment (augmented.jsonl) and prepare
// (dataset.h5). `metareuse run` and the single-stage commands (`metareuse
// patterns`, `augment`, `prepare`) both call these. Collective.
#pragma once

#include <string>

#include "metareuse/corpus/corpus.h"
#include "metareuse/patterns/reflect.h"  // StrategistFactory
#include "metareuse/tokenizer/prompt_format.h"  // TextFormat

namespace metareuse {
class Config;
class Runtime;

// corpus.fields and corpus.max_depth as read options.
ReadOptions corpus_read_options(const Config& config);

// Mines corpus.files per patterns.* (or imports patterns.import), reports the
// coverage of patterns.holdout, and writes the handbook (rank 0). Returns
// kExitBadRecords when corpus.strict is set and the corpus has bad lines.
// patterns.mode=reflect asks `make_strategist` (the torch binary's
// make_model_strategist) for the model; without one it is a UsageError.
int patterns_stage(const Config& config, Runtime& runtime, const std::string& handbook_path,
                   const StrategistFactory& make_strategist = {});

// Writes the training examples of corpus.files with the handbook's patterns
// (augment.*). Returns kExitBadRecords like patterns_stage.
int augment_stage(const Config& config, Runtime& runtime, const std::string& handbook_path,
                  const std::string& out_path);

// The tokenizer and template training uses: tokenizer.path and
// tokenizer.template resolved against model.path (prompt_format.h's rule).
// The tokenizer is "" for a from-scratch model without tokenizer.path.
TextFormat training_text_format(const Config& config);

// Tokenizes the examples `input` into the HDF5 dataset `output` with
// training_text_format(config) (dataset.*).
int prepare_stage(const Config& config, Runtime& runtime, const std::string& input, const std::string& output);

}  // namespace metareuse
