// `metareuse generate`: prompts (token ids, text, one chat turn, or a file of
// id lists) through a model source, one output line per prompt. The CLI reads
// the flags into these options (run/resolve.h's generate_text_options) and
// prints the lines.
#pragma once

#include <nlohmann/json.hpp>  // the output lines

#include <string>
#include <vector>

#include "metareuse/model/generate.h"  // GenerationOptions

namespace metareuse {

struct GenerateTextOptions {
  std::string model;         // a Hugging Face folder or a checkpoint (generate.model)
  std::string tokenizer;     // tokenizer.path; "": the model folder's tokenizer.json
  std::string prompt_ids;    // "1,2,3" (generate.prompt_ids)
  std::string prompt;        // text, encoded with the tokenizer (generate.prompt)
  std::string prompts_file;  // JSON Lines, one array of token ids per line (generate.prompts)
  bool chat = false;         // the prompt as one user turn of the model's chat template (generate.chat)
  GenerationOptions generation;
};

// Exactly one of prompt_ids, prompt and prompts_file; a text prompt needs a
// tokenizer; top_p applies to sampling. Throws UsageError naming the flag.
void check_generate_text_options(const GenerateTextOptions& options);

// Rank 0's work: loads the model (fp32) and the tokenizer, checks each prompt
// against the model's positions before any memory is touched, generates, and
// logs the throughput. One line per prompt: {"ids": the new tokens (with the
// stop token last when one ended it)}, and "text" when there is a tokenizer.
std::vector<nlohmann::json> generate_text(const GenerateTextOptions& options);

}  // namespace metareuse
