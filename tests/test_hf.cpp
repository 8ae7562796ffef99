// Hugging Face transformers as a live reference (label hf):
// tests/hf_generator.py draws 20 random small Llama configs (tied and untied,
// GQA 1-4, rope default / llama3 / linear, head dims that are not powers of two,
// vocab sizes that are not multiples of 64) with a seed that changes every run,
// saves each with save_pretrained and computes, in float64, the logits, the loss,
// every gradient, 3 torch.optim.AdamW steps and 8 greedy tokens. This test loads
// each folder and compares; a failure prints the case's config and seed (rerun
// with METAREUSE_HF_SEED=<seed> to draw the same configs).
// Tolerances as test_model.cpp's against the fp64 fixture: fp32 against fp64,
// 1e-5 of the largest |logit|, 1e-4 on gradients and the AdamW losses; the
// parameters after AdamW as explained at the check.
#include "torch_catch.h"  // libtorch, then Catch2 (its CHECK, not glog's)
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli_runner.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "metareuse/parallel/sharded_llama.h"
#include "metareuse/train/optimizer.h"
#include "tensor_compare.h"  // relative_error, to_vector
#include "test_support.h"

using namespace metareuse;
namespace fs = std::filesystem;

namespace {

using test::relative_error;
using test::to_vector;

void check_case(const fs::path& folder, std::int64_t& far_elements, std::int64_t& all_elements) {
  std::ifstream case_file(folder / "case.json");
  const auto drawn = nlohmann::json::parse(case_file);
  INFO("hf_generator.py case " << folder.string() << ": " << drawn.dump());
  SafetensorsFile reference((folder / "reference.safetensors").string());
  auto source = open_model_source(folder.string());
  LlamaModel model = load_model(*source);

  // Logits, loss and every gradient.
  torch::Tensor ids = reference.tensor("input_ids");  // (2, 17)
  torch::Tensor logits = model.forward(ids);          // (2, 17, V)
  CHECK(relative_error(logits, reference.tensor("logits")) <= 1e-5);
  torch::Tensor loss = next_token_loss(logits, ids);
  const double reference_loss = reference.tensor("loss").item<double>();
  CHECK(std::abs(loss.item<double>() - reference_loss) <= 1e-5 * std::abs(reference_loss));
  loss.backward();
  int compared = 0;
  for (const auto& [name, parameter] : model.named_parameters()) {
    INFO(name);
    REQUIRE(reference.contains("grad." + name));
    CHECK(relative_error(model.gradient(name), reference.tensor("grad." + name)) <= 1e-4);
    ++compared;
  }
  CHECK(compared > 0);

  // Greedy tokens from the saved weights.
  {
    torch::NoGradGuard no_grad;
    GenerationOptions options;
    options.max_new_tokens = 8;
    const std::vector<std::int64_t> prompt = to_vector(reference.tensor("gen_prompt"));
    const std::vector<std::int64_t> expected = to_vector(reference.tensor("gen_greedy"));
    const std::vector<std::int64_t> ours = generate(model, prompt, options);
    REQUIRE(ours.size() == expected.size());
    // Identical, except that a random tiny model can meet a near-tie: the two
    // picks' logits equal within the logits' tolerance. Past such a step the
    // sequences may part legitimately; before it every token must agree.
    std::size_t step = 0;
    while (step < ours.size() && ours[step] == expected[step]) ++step;
    if (step < ours.size()) {
      std::vector<std::int64_t> prefix = prompt;
      prefix.insert(prefix.end(), expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(step));
      torch::Tensor last = model.forward(torch::tensor(prefix).unsqueeze(0))[0][-1];  // (V,)
      const double scale = last.abs().max().item<double>();
      const double gap = std::abs(last[ours[step]].item<double>() - last[expected[step]].item<double>()) / scale;
      INFO("greedy tokens part at step " << step << ": ours " << ours[step] << ", transformers' " << expected[step]
                                         << ", their logits differ by " << gap << " of the largest");
      CHECK(gap <= 1e-5);
    }
  }

  // 3 AdamW steps on the sharding engine (one rank), weight decay on every parameter.
  Communicator& comm = test::runtime().world();
  ShardedLlama sharded(source->config(), comm, torch::kCPU, torch::kFloat32);
  std::map<std::string, torch::Tensor> weights;
  LlamaModel fresh = load_model(*source);
  for (const auto& [name, value] : fresh.named_parameters()) weights.emplace(name, value.detach());
  sharded.load_full(weights);
  AdamW optimizer(sharded.sharded(), AdamWConfig{3e-3, 0.9, 0.95, 1e-8, 0.1, "all"});
  LossScaler scaler(LossScalerConfig{});
  std::int64_t step = 0;
  for (int s = 0; s < 3; ++s) {
    torch::Tensor batch_ids = reference.tensor(fmt::format("batch{}", s));  // (2, 12)
    TrainBatch batch{batch_ids, next_token_targets(batch_ids)};
    const double step_loss = sharded.forward_backward(batch, batch_ids.size(0), 1.0);
    optimizer.step(3e-3, 0.0, scaler, step);
    const double expected = reference.tensor(fmt::format("loss{}", s)).item<double>();
    INFO("AdamW step " << s);
    CHECK(std::abs(step_loss - expected) <= 1e-4 * std::abs(expected));
  }
  // Adam divides each gradient element by its own magnitude, so an element whose
  // gradient is at rounding level (fp32 here, fp64 there) may step by +lr on one
  // side and -lr on the other: a few elements can differ by up to 2 lr per step
  // (seen: 3.7e-3 after 3 steps at lr 3e-3). So: every element within that
  // bound, and all but 0.1% of the elements of all 20 cases within 1e-4. Seen:
  // 5 tensors with elements over 1e-4 at seed 591081, one element of 768 at 736191.
  auto trained = sharded.sharded().gather_full();
  for (const auto& [name, value] : trained) {
    INFO("after 3 AdamW steps: " << name);
    REQUIRE(reference.contains("final." + name));
    torch::Tensor difference = (value.to(torch::kFloat64) - reference.tensor("final." + name)).abs();
    CHECK(difference.max().item<double>() <= 3 * 2 * 3e-3);
    // Counted over all 20 cases (a flip can hit a 24-element norm too); checked by the caller.
    far_elements += (difference > 1e-4).sum().item<std::int64_t>();
    all_elements += difference.numel();
  }
}

}  // namespace

TEST_CASE("20 random Llama configs match transformers: logits, loss, gradients, AdamW, greedy", "[hf]") {
  // A new seed every run unless METAREUSE_HF_SEED pins one (to replay a failure).
  const char* pinned = std::getenv("METAREUSE_HF_SEED");
  const long long seed = pinned != nullptr && *pinned != '\0'
                             ? std::atoll(pinned)
                             : std::chrono::system_clock::now().time_since_epoch().count() % 1000000;
  auto work = test::temp_dir("hf-generator");
  auto result = test::run_shell(fmt::format("TQDM_DISABLE=1 '{}' '{}/tests/hf_generator.py' --seed {} --count 20 --out '{}'",
                                            METAREUSE_PYTHON, METAREUSE_SOURCE_DIR, seed, work.string()));
  if (result.status == 3) {
    METAREUSE_SKIP("transformers is not importable by " + std::string(METAREUSE_PYTHON) + ": " + result.output);
    return;
  }
  INFO("seed " << seed << " (METAREUSE_HF_SEED=" << seed << " replays it)\n" << result.output);
  REQUIRE(result.status == 0);
  std::int64_t far_elements = 0, all_elements = 0;
  for (int i = 0; i < 20; ++i) check_case(work / std::to_string(i), far_elements, all_elements);
  INFO(far_elements << " of " << all_elements << " parameters more than 1e-4 from torch's AdamW after 3 steps");
  CHECK(far_elements <= all_elements / 1000);
}
