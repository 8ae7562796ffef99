// `metareuse forward` (forward_file.h).
#include "metareuse/eval/forward_file.h"

#include <fmt/format.h>
#include <fmt/ranges.h>   // fmt::join
#include <torch/torch.h>  // tensors

#include <cmath>

#include "metareuse/checkpoint/model_source.h"  // open_model_or_checkpoint
#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"  // load_model

namespace metareuse {
namespace {

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  throw UsageError(fmt::format("--dtype must be float32 or bfloat16, got '{}'", name));
}

}  // namespace

void check_forward_file_options(const ForwardFileOptions& options) {
  if (options.model.empty()) throw UsageError("give the model with --model (forward.model)");
  if (options.ids.empty()) throw UsageError("give the input ids with --ids (forward.ids)");
  if (options.out.empty()) throw UsageError("give the output file with --out (forward.out)");
  parse_dtype(options.dtype);
}

nlohmann::json forward_file(const ForwardFileOptions& options) {
  check_forward_file_options(options);
  Stopwatch watch;
  auto source = open_model_or_checkpoint(options.model);
  LlamaModel model = load_model(*source, torch::TensorOptions().dtype(parse_dtype(options.dtype)));
  SafetensorsFile ids_file(options.ids);
  if (!ids_file.contains("input_ids")) {
    throw InputError(fmt::format("'{}' has no tensor 'input_ids' (it holds: {})", options.ids,
                                 fmt::join(ids_file.names(), ", ")));
  }
  torch::Tensor input_ids = ids_file.tensor("input_ids");
  if (input_ids.scalar_type() == torch::kInt32) input_ids = input_ids.to(torch::kInt64);
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64) {
    throw InputError(fmt::format("'{}': input_ids must be int64 [B, T], got {} [{}]", options.ids,
                                 c10::toString(input_ids.scalar_type()), fmt::join(input_ids.sizes(), ", ")));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model.forward(input_ids).to(torch::kFloat32);  // (B, T, V)
  torch::Tensor loss = next_token_loss(logits, input_ids).reshape({1});
  if (!std::isfinite(loss.item<double>())) {
    throw InputError(fmt::format("{}: the forward pass gave a non-finite loss ({}) on {}; nothing was written to {}",
                                 options.model, loss.item<double>(), options.ids, options.out));
  }
  write_safetensors(options.out, {{"logits", logits}, {"loss", loss}});
  return {{"loss", loss.item<double>()},
          {"logits_shape", logits.sizes().vec()},
          {"out", options.out},
          {"seconds", watch.seconds()}};
}

}  // namespace metareuse
