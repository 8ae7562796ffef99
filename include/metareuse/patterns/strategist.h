// The strategist on a real model (reflect mode, and phrasing mined patterns):
// a Strategist (reflect.h) that puts each prompt through the model's template
// as eval does (its own chat template, a checkpoint's trained one, or
// tokenizer.template as set), decodes with generate_batch and returns the
// decoded replies. The declaration is torch-free; the definition links
// the model, and only the torch binary (metareuse-torch) has it.
#pragma once

#include "metareuse/patterns/reflect.h"

namespace metareuse {

// Loads options.model (a Hugging Face folder or a metareuse checkpoint) and
// its tokenizer once (load_answering_model); the returned strategist answers
// each call's prompts in batches of options.decoding.batch_size. A bad model path, a missing tokenizer or a
// tokenizer larger than the model's vocabulary throws, naming the path.
Strategist make_model_strategist(const StrategistOptions& options);

}  // namespace metareuse
