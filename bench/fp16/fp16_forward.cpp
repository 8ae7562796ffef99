// The training forward's logits for a model folder and token ids, in each
// precision metareuse trains in: the sharded engine's mixed-precision forward
// (fp32 residual stream, matmuls and attention in fp16/bf16, what autocast
// does) and, beside it, the same weights run wholly in fp16 (as
// transformers' model.half()). bench/fp16/smollm2_fp16.py compares them with
// transformers in fp32 and under torch.autocast(float16).
//
//   fp16_forward MODEL_DIR IDS.safetensors OUT.safetensors
// IDS holds input_ids int64 (B, T); OUT gets fp32 (B, T, V) logits named
// fp32, mixed_fp16, mixed_bf16 and pure_fp16 (SDPA), and the same with
// eager attention (suffix _eager).
#include <fmt/format.h>
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <string>

#include "metareuse/distributed/communicator.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/parallel/sharded_llama.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: fp16_forward MODEL_DIR IDS.safetensors OUT.safetensors\n");
    return 64;
  }
  using namespace metareuse;
  try {
    auto source = open_model_source(argv[1]);
    LlamaModel reference = load_model(*source);
    torch::Tensor ids = SafetensorsFile(argv[2]).tensor("input_ids", torch::kInt64);  // (B, T)
    std::map<std::string, torch::Tensor> parameters;
    for (const auto& [name, value] : reference.named_parameters()) parameters.emplace(name, value.detach());
    auto comm = make_self_communicator();

    std::vector<std::pair<std::string, torch::Tensor>> out;
    // Each with SDPA (the default kernel) and with the eager attention
    // transformers' reference runs, to tell the kernel's rounding from the rest.
    for (AttentionKind attention : {AttentionKind::kSdpa, AttentionKind::kEager}) {
      const std::string suffix = attention == AttentionKind::kEager ? "_eager" : "";
      LlamaConfig config = source->config();
      config.attention = attention;
      for (auto [name, dtype] : {std::pair{"fp32", torch::kFloat32}, std::pair{"mixed_fp16", torch::kFloat16},
                                 std::pair{"mixed_bf16", torch::kBFloat16}}) {
        ShardedLlama model(config, *comm, torch::kCPU, dtype);
        model.load_full(parameters);
        out.emplace_back(name + suffix, model.logits(ids).to(torch::kFloat32).contiguous());
      }
      LlamaModel half = load_model(*source, torch::TensorOptions().dtype(torch::kFloat16));
      half.set_attention(attention);
      torch::NoGradGuard no_grad;
      out.emplace_back("pure_fp16" + suffix, half.forward(ids).to(torch::kFloat32).contiguous());
    }
    write_safetensors(argv[3], out);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "fp16_forward: %s\n", error.what());
    return 1;
  }
  return 0;
}
