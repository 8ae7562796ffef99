// How eval generates an answer: the prompt template and the decoding. Torch-free,
// so the eval stage's options (run_eval.h) carry it without the model's headers.
#pragma once

#include <cstdint>
#include <string>

namespace metareuse {

struct EvalOptions {
  std::string template_name = "chat";  // chat, plain or model (PromptFormat; resolved, never auto)
  std::string tokenizer_path;           // the tokenizer's file: template model is read beside it
  std::int64_t max_new_tokens = 256;
  bool greedy = true;
  double temperature = 1.0;
  double top_p = 1.0;
  std::uint64_t seed = 0;
  std::int64_t batch_size = 8;  // answers generated together (greedy answers do not depend on it)
};

}  // namespace metareuse
