// How eval generates an answer: the decoding (the one GenerationOptions, built
// from the config in one place: run/resolve.cpp's decoding_options) and the
// prompt template. Torch-free, so the eval stage's options (run_eval.h) carry
// it without the model's headers.
#pragma once

#include <string>

#include "metareuse/model/generation_options.h"  // GenerationOptions, torch-free

namespace metareuse {

// The decoding as generate_batch takes it (batch_size: answers generated
// together; greedy answers do not depend on it; the stop tokens come from
// the prompt format), plus the template.
struct EvalOptions : GenerationOptions {
  EvalOptions() {
    max_new_tokens = 256;
    batch_size = 8;
  }
  std::string template_name = "chat";  // chat, plain or model (PromptFormat; resolved, never auto)
  std::string tokenizer_path;           // the tokenizer's file: template model is read beside it
};

}  // namespace metareuse
