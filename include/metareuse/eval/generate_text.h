// `metareuse generate`: prompts (token ids, text, one chat turn, or a file of
// id lists or text lines) through a model source, one output line per prompt.
// The CLI reads the flags into these options (run/resolve.h's
// generate_text_options) and prints the lines.
#pragma once

#include <nlohmann/json.hpp>  // the output lines

#include <cstdint>
#include <string>
#include <vector>

#include "metareuse/model/generate.h"  // GenerationOptions

namespace metareuse {

struct GenerateTextOptions {
  std::string model;         // a Hugging Face folder or a checkpoint (generate.model)
  std::string tokenizer;     // tokenizer.path; "": the one the model brings (resolve_text_format)
  std::string template_name = "auto";  // tokenizer.template; auto: the one the model brings
  std::string prompt_ids;    // "1,2,3" (generate.prompt_ids)
  std::string prompt;        // text, encoded with the tokenizer (generate.prompt)
  std::string prompts_file;  // one prompt a line (generate.prompts)
  std::string prompts_format = "auto";  // auto, text or ids (generate.prompts_format)
  bool chat = false;         // text prompts as one user turn of the template (generate.chat)
  bool stop = true;          // stop at the model's eos and the template's stop ids (generate.stop)
  GenerationOptions generation;
};

// Exactly one of prompt_ids, prompt and prompts_file; --chat needs text
// prompts; top_p applies to sampling. Throws UsageError naming the flag.
void check_generate_text_options(const GenerateTextOptions& options);

// A prompts file read by its one rule (generate.prompts_format): with "ids"
// each line is a non-empty JSON array of token ids, with "text" each line is
// a prompt's text, and with "auto" a line that is a JSON array of integers is
// ids and any other line text, and the file must be all of one kind. Blank
// lines are skipped. Throws InputError naming the file and line.
struct PromptsFile {
  bool text = false;
  std::vector<std::vector<std::int64_t>> ids;  // ids files
  std::vector<std::string> texts;              // text files
};
PromptsFile read_prompts_file(const std::string& path, const std::string& format);

// Rank 0's work: reads the prompts, loads the model (fp32) and its tokenizer
// and template as eval does (load_answering_model: the ones given, else the
// checkpoint's own or the folder's), checks each prompt against the model's
// positions before any memory is touched, generates, and logs the
// throughput. One line per prompt: {"ids": the new tokens (with the stop
// token last when one ended it)}, and "text" when there is a tokenizer.
std::vector<nlohmann::json> generate_text(const GenerateTextOptions& options);

}  // namespace metareuse
