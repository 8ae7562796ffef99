// `metareuse forward`: a model source run on token ids from a safetensors
// file, its logits and next-token loss written to another (the comparison
// format of the transformers references): input_ids int64 [B, T] in;
// logits f32 [B, T, V] and loss f32 [1] out.
#pragma once

#include <nlohmann/json.hpp>  // the summary line

#include <string>

namespace metareuse {

struct ForwardFileOptions {
  std::string model;              // a Hugging Face folder or a checkpoint (forward.model)
  std::string ids;                // safetensors with input_ids (forward.ids)
  std::string out;                // safetensors to write (forward.out)
  std::string dtype = "float32";  // compute dtype: float32 or bfloat16 (forward.dtype)
};

// Throws UsageError naming the flag when model, ids or out is missing.
void check_forward_file_options(const ForwardFileOptions& options);

// Rank 0's work. Returns {"loss", "logits_shape", "out", "seconds"}. A
// non-finite loss is an InputError and nothing is written.
nlohmann::json forward_file(const ForwardFileOptions& options);

}  // namespace metareuse
