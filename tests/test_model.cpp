// The Llama model against Hugging Face transformers. Reference:
// ../shared/fixtures/hf_tiny_llama32 (made by ../shared/fixtures/make_fixtures.py
// with transformers 5.17.0: logits, loss and gradients computed in float64
// and stored as fp32; greedy tokens from the fp32 model with a KV cache).
// Tolerances: our fp32 forward against an fp64 reference differs by fp32
// rounding (~1e-7 relative per op), so 1e-5 on logits and 1e-4 on gradients
// leave a margin of 10-100x while catching any real error (a wrong mask,
// rope or norm moves logits by > 1e-2).
#include "torch_catch.h"  // libtorch, then Catch2 (its CHECK, not glog's)
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_runner.h"
#include "metareuse/core/error.h"
#include "metareuse/core/timing.h"
#include "metareuse/model/chunked_loss.h"
#include "metareuse/model/config.h"
#include "metareuse/model/cuda_support.h"
#include "metareuse/model/generate.h"
#include "metareuse/model/llama.h"
#include "metareuse/model/safetensors.h"
#include "metareuse/model/source.h"
#include "sync_counter.h"
#include "tensor_compare.h"  // relative_error, to_vector
#include "test_support.h"

using Catch::Matchers::Contains;
using namespace metareuse;
namespace fs = std::filesystem;

namespace {

fs::path fixture_dir(const std::string& shared) { return fs::path(shared) / "fixtures" / "hf_tiny_llama32"; }

using test::relative_error;
using test::to_vector;

LlamaModel load_fixture(const fs::path& dir) { return load_model(*open_model_source(dir.string())); }

// A model folder made from the fixture with one change, for the error cases.
fs::path fixture_variant(const fs::path& fixture, const std::string& name,
                         const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  auto dir = test::temp_dir("model-" + name);
  fs::copy_file(fixture / "config.json", dir / "config.json");
  SafetensorsFile file((fixture / "model.safetensors").string());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& tensor_name : file.names()) tensors.emplace_back(tensor_name, file.tensor(tensor_name));
  edit(tensors);
  write_safetensors((dir / "model.safetensors").string(), tensors);
  return dir;
}

}  // namespace

// ------------------------------------------------------------------ config ----

TEST_CASE("presets report the published parameter counts without allocating", "[model][config]") {
  CHECK(parameter_count(LlamaConfig::preset("llama3.2-3b")) == 3'212'749'824);
  CHECK(parameter_count(LlamaConfig::preset("llama3.2-1b")) == 1'235'814'400);
  CHECK(parameter_count(LlamaConfig::preset("llama3.1-8b")) == 8'030'261'248);
  CHECK_THROWS_WITH(LlamaConfig::preset("llama9"), Contains("llama3.2-3b") && Contains("debug-tiny"));

  // The whole 3B model on the meta device: shapes only, no memory.
  const std::int64_t before = peak_rss_bytes();
  LlamaModel model(LlamaConfig::preset("llama3.2-3b"), torch::TensorOptions().device(torch::kMeta));
  CHECK(model.parameter_count() == 3'212'749'824);
  CHECK(model.parameter("model.layers.27.mlp.down_proj.weight").sizes() == torch::IntArrayRef({3072, 8192}));
  CHECK(model.units().size() == 30);  // embeddings, 28 layers, norm
  // 3.2e9 fp32 parameters would be 12.9 GB; allow 64 MiB of noise.
  CHECK(peak_rss_bytes() - before < (64 << 20));
}

TEST_CASE("both config.json key styles read the same", "[model][config]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = fixture_dir(shared);
  LlamaConfig v5 = LlamaConfig::from_hf_file((dir / "config.json").string());
  LlamaConfig hub = LlamaConfig::from_hf_file((dir / "config_hub_style.json").string());
  for (const LlamaConfig* config : {&v5, &hub}) {
    CHECK(config->rope.type == RopeConfig::Type::kLlama3);
    CHECK(config->rope.theta == 500000.0);
    CHECK(config->rope.factor == 32.0);
    CHECK(config->rope.original_max_position_embeddings == 64);
    CHECK(config->num_key_value_heads == 2);
    CHECK(config->head_dim == 16);
    CHECK(config->tie_word_embeddings);
    CHECK(config->eos_token_ids == std::vector<std::int64_t>{2});
  }
  CHECK(v5.to_hf_json() == hub.to_hf_json());
  CHECK(unit_layouts(v5).size() == 4);
  CHECK(parameter_count(v5) == 125'248);  // model.safetensors.index.json: total_parameters
  // The debug-tiny preset is this fixture's shape.
  CHECK(LlamaConfig::preset("debug-tiny").to_hf_json() == v5.to_hf_json());
  // And our own config.json reads back to the same thing.
  CHECK(LlamaConfig::from_hf_json(v5.to_hf_json(), "round trip").to_hf_json() == v5.to_hf_json());
}

TEST_CASE("config.json errors name the file and the key", "[model][config]") {
  nlohmann::json base = LlamaConfig::preset("debug-tiny").to_hf_json();
  auto error_of = [](const nlohmann::json& tree) {
    try {
      LlamaConfig::from_hf_json(tree, "some/config.json");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  nlohmann::json yarn = base;
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  CHECK_THAT(error_of(yarn), Contains("some/config.json") && Contains("rope_scaling.rope_type") && Contains("yarn"));
  nlohmann::json no_hidden = base;
  no_hidden.erase("hidden_size");
  CHECK_THAT(error_of(no_hidden), Contains("'hidden_size'") && Contains("missing"));
  nlohmann::json bad_heads = base;
  bad_heads["num_key_value_heads"] = 3;
  CHECK_THAT(error_of(bad_heads), Contains("num_key_value_heads") && Contains("does not divide"));
  nlohmann::json gelu = base;
  gelu["hidden_act"] = "gelu";
  CHECK_THAT(error_of(gelu), Contains("hidden_act"));
  nlohmann::json v5_missing_theta = base;
  v5_missing_theta.erase("rope_scaling");
  v5_missing_theta["rope_parameters"] = {{"rope_type", "default"}};
  CHECK_THAT(error_of(v5_missing_theta), Contains("rope_theta"));
}

// ------------------------------------------------------------------ parity ----

TEST_CASE("logits, loss, every gradient and inv_freq match transformers", "[model][parity]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = fixture_dir(shared);
  SafetensorsFile reference((dir / "reference.safetensors").string());
  LlamaModel model = load_fixture(dir);
  torch::Tensor ids = reference.tensor("input_ids");  // (2, 24)

  CHECK(relative_error(model.inv_freq(), reference.tensor("inv_freq")) <= 1e-6);

  // Both attention kernels (training's recompute against the same reference: test_train).
  for (AttentionKind attention : {AttentionKind::kSdpa, AttentionKind::kEager}) {
    INFO("attention " << attention_name(attention));
    model.set_attention(attention);
    model.zero_grad();
    torch::Tensor logits = model.forward(ids);  // (2, 24, 512)
    const double logits_error = relative_error(logits, reference.tensor("logits"));
    INFO("logits relative error " << logits_error);
    CHECK(logits_error <= 1e-5);
    torch::Tensor loss = next_token_loss(logits, ids);
    const double reference_loss = reference.tensor("loss").item<double>();
    CHECK(std::abs(loss.item<double>() - reference_loss) <= 1e-5 * std::abs(reference_loss));
    loss.backward();

    int compared = 0;
    for (const auto& name : reference.names()) {
      if (name.rfind("grad.", 0) != 0) continue;
      const std::string parameter = name.substr(5);
      torch::Tensor gradient = model.gradient(parameter);
      REQUIRE(gradient.defined());
      const double error = relative_error(gradient, reference.tensor(name));
      INFO(parameter << " gradient relative error " << error);
      CHECK(error <= 1e-4);
      ++compared;
    }
    // Every parameter has a reference gradient (the tied embedding's includes the head's share).
    CHECK(compared == static_cast<int>(model.named_parameters().size()));
  }
}

TEST_CASE("bfloat16 runs and stays close to fp32", "[model]") {
  LlamaModel fp32(LlamaConfig::preset("debug-tiny"));
  fp32.init_weights(3);
  LlamaModel bf16(LlamaConfig::preset("debug-tiny"), torch::TensorOptions().dtype(torch::kBFloat16));
  {
    torch::NoGradGuard no_grad;
    for (std::size_t u = 0; u < fp32.flat_parameters().size(); ++u) bf16.flat_parameters()[u].copy_(fp32.flat_parameters()[u]);
  }
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::randint(0, 512, {2, 16}, torch::kInt64);
  const double loss32 = next_token_loss(fp32.forward(ids), ids).item<double>();
  torch::Tensor logits16 = bf16.forward(ids);
  CHECK(logits16.scalar_type() == torch::kBFloat16);
  // bf16 keeps 8 bits of mantissa: about 0.4% per rounding.
  CHECK(std::abs(next_token_loss(logits16, ids).item<double>() - loss32) <= 0.02 * loss32);
}

// The chunked head and loss (model/chunked_loss.h) against the unchunked
// path: the head's weight is a view of the embeddings unit's flat buffer, as
// in training, so the gradient is checked where training reads it (tied:
// the embedding; untied: lm_head.weight, with the embedding's part zero).
// fp32 rounding is ~1e-7 per op; 1e-6 is the bound the chunking must keep.
TEST_CASE("the chunked head and loss give the unchunked loss and gradients", "[model][loss]") {
  for (bool tied : {true, false}) {
    LlamaConfig config = LlamaConfig::preset("debug-tiny");  // V 512, C 64
    config.tie_word_embeddings = tied;
    const UnitLayout layout = unit_layouts(config).front();
    torch::Generator generator = at::detail::createCPUGenerator(tied ? 5 : 6);
    const int64_t B = 3, T = 7, C = config.hidden_size, V = config.vocab_size;  // 21 rows
    const torch::Tensor flat = torch::randn({layout.numel}, generator) * 0.1;
    const torch::Tensor hidden = torch::randn({B, T, C}, generator);
    torch::Tensor targets = torch::randint(0, V, {B, T}, generator, torch::kInt64);
    targets[0].fill_(-100);  // the whole first row, so a chunk of 7 has no target at all
    targets[1][3] = -100;
    targets[2][6] = -100;

    struct Result {
      torch::Tensor loss, hidden_grad, flat_grad;
    };
    auto run = [&](int64_t chunk_rows, torch::ScalarType dtype) {
      torch::Tensor h = hidden.clone().requires_grad_(true);          // the fp32 residual stream
      torch::Tensor f = flat.to(dtype).clone().requires_grad_(true);  // the unit's buffer in compute precision
      torch::Tensor loss = head_loss_sum(layout, f, h, targets, chunk_rows) / 17.0;
      loss.backward();
      return Result{loss.detach(), h.grad(), f.grad()};
    };
    const Result whole = run(0, torch::kFloat32);
    const torch::Tensor weight_grad = head_weight(layout, whole.flat_grad);
    REQUIRE(weight_grad.abs().max().item<double>() > 0);
    if (!tied) CHECK(unit_views(layout, whole.flat_grad)[0].abs().max().item<double>() == 0.0);
    for (int64_t chunk_rows : {1, 4, 7, 10, 21, 512}) {
      INFO("tied " << tied << ", chunks of " << chunk_rows << " rows (21 rows)");
      const Result chunked = run(chunk_rows, torch::kFloat32);
      CHECK(std::abs(chunked.loss.item<double>() - whole.loss.item<double>()) <= 1e-6 * whole.loss.item<double>());
      CHECK(relative_error(chunked.hidden_grad, whole.hidden_grad) <= 1e-6);
      CHECK(relative_error(chunked.flat_grad, whole.flat_grad) <= 1e-6);
      // Ignored positions get no gradient.
      CHECK(chunked.hidden_grad[0].abs().max().item<double>() == 0.0);
      CHECK(chunked.hidden_grad[1][3].abs().max().item<double>() == 0.0);
    }

    // fp16/bf16 weights: the chunks' logits are the unchunked ones, and the
    // weight's gradient is summed in the weight's precision, one rounding per
    // chunk (three here). Against the fp32 result, the chunked error stays
    // within twice the unchunked error (measured: bf16 5.2e-3 against 4.8e-3,
    // fp16 8.1e-4 against 5.8e-4).
    for (torch::ScalarType dtype : {torch::kBFloat16, torch::kFloat16}) {
      const Result low_whole = run(0, dtype);
      const Result low_chunked = run(8, dtype);
      INFO("tied " << tied << ", " << c10::toString(dtype) << ", chunks of 8 rows");
      CHECK(std::abs(low_chunked.loss.item<double>() - low_whole.loss.item<double>()) <=
            1e-6 * low_whole.loss.item<double>());
      CHECK(relative_error(low_chunked.hidden_grad, low_whole.hidden_grad) <= 1e-6);
      const double whole_error = relative_error(low_whole.flat_grad, whole.flat_grad);
      const double chunked_error = relative_error(low_chunked.flat_grad, whole.flat_grad);
      INFO("weight gradient error against fp32: unchunked " << whole_error << ", chunked " << chunked_error);
      CHECK(whole_error > 0);
      CHECK(chunked_error <= 2 * whole_error);
    }
  }
  CHECK_THROWS_WITH(chunked_token_loss_sum(torch::zeros({2, 3, 4}), torch::zeros({5, 4}),
                                           torch::zeros({2, 3}, torch::kInt64), 0),
                    Contains("chunk_rows > 0"));
  CHECK_THROWS_WITH(chunked_token_loss_sum(torch::zeros({2, 3, 4}), torch::zeros({5, 8}),
                                           torch::zeros({2, 3}, torch::kInt64), 2),
                    Contains("does not match the head's weight"));
}

TEST_CASE("units run from externally supplied flat buffers", "[model][units]") {
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(11);
  torch::Tensor ids = torch::randint(0, 512, {1, 9}, torch::kInt64);
  torch::NoGradGuard no_grad;
  torch::Tensor expected = model.forward(ids);

  // What a sharding engine does: each unit's buffer is a fresh tensor (as
  // after an all-gather), here copied out of one big buffer.
  const auto& units = model.units();
  std::int64_t total = 0;
  for (const auto& unit : units) total += unit.numel;
  torch::Tensor storage = torch::cat(model.flat_parameters());  // (total,)
  CHECK(storage.numel() == total);
  std::vector<torch::Tensor> gathered;
  std::int64_t offset = 0;
  for (const auto& unit : units) {
    gathered.push_back(storage.narrow(0, offset, unit.numel).clone());
    offset += unit.numel;
  }
  const LlamaConfig& config = model.config();
  RotaryTables rotary = rope_tables(rope_inv_freq(config), 0, ids.size(1), torch::kFloat32, torch::kCPU);
  torch::Tensor hidden = embedding_forward(units[0], gathered[0], ids);
  for (std::size_t u = 1; u + 1 < units.size(); ++u) {
    hidden = decoder_layer_forward(config, units[u], gathered[u], hidden, rotary, nullptr);
  }
  hidden = final_norm_forward(config, units.back(), gathered.back(), hidden);
  torch::Tensor logits = head_forward(units[0], gathered[0], hidden);
  CHECK(torch::equal(logits, expected));
  CHECK_THROWS_WITH(decoder_layer_forward(config, units[1], gathered[0], hidden, rotary, nullptr),
                    Contains("flat buffer"));
}

TEST_CASE("sharded and hub-style copies of the fixture load the same model", "[model][parity]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = fixture_dir(shared);
  LlamaModel single = load_fixture(dir);
  LlamaModel sharded = load_fixture(dir / "sharded");
  auto hub = test::temp_dir("model-hub-style");
  fs::copy_file(dir / "config_hub_style.json", hub / "config.json");
  fs::copy_file(dir / "model.safetensors", hub / "model.safetensors");
  LlamaModel hub_model = load_fixture(hub);
  for (std::size_t u = 0; u < single.flat_parameters().size(); ++u) {
    CHECK(torch::equal(single.flat_parameters()[u], sharded.flat_parameters()[u]));
    CHECK(torch::equal(single.flat_parameters()[u], hub_model.flat_parameters()[u]));
  }
  CHECK(torch::equal(single.inv_freq(), hub_model.inv_freq()));
  auto source = open_model_source((dir / "sharded").string());
  CHECK_THAT(source->description(), Contains("5 shards"));
  // Unit by unit, as a sharding engine loads.
  for (std::size_t u = 0; u < single.units().size(); ++u) {
    CHECK(torch::equal(source->read_unit(single.units()[u], torch::kFloat32), single.flat_parameters()[u]));
  }
}

TEST_CASE("greedy generation with the KV cache gives transformers' tokens", "[model][parity][generate]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = fixture_dir(shared);
  SafetensorsFile reference((dir / "reference.safetensors").string());
  LlamaModel model = load_fixture(dir);
  GenerationOptions options;
  options.max_new_tokens = 16;
  const auto prompt = to_vector(reference.tensor("gen_prompt"));
  const auto expected = to_vector(reference.tensor("gen_greedy"));
  for (AttentionKind attention : {AttentionKind::kSdpa, AttentionKind::kEager}) {
    INFO("attention " << attention_name(attention));
    model.set_attention(attention);
    options.use_cache = true;
    CHECK(generate(model, prompt, options) == expected);
    options.use_cache = false;
    CHECK(generate(model, prompt, options) == expected);
  }
}

TEST_CASE("batched generation gives transformers' logits and greedy tokens beside other prompts",
          "[model][parity][generate]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto dir = fixture_dir(shared);
  SafetensorsFile reference((dir / "reference.safetensors").string());
  LlamaModel model = load_fixture(dir);
  const auto prompt = to_vector(reference.tensor("gen_prompt"));
  const auto expected = to_vector(reference.tensor("gen_greedy"));
  GenerationOptions options;
  options.max_new_tokens = 16;
  // The fixture's prompt between a longer and a shorter one, so it is padded.
  auto input_ids = reference.tensor("input_ids");  // (2, 24)
  std::vector<std::int64_t> longer = to_vector(input_ids[0]);
  auto batched = generate_batch(model, {longer, prompt, {prompt[0], prompt[1]}}, options);
  CHECK(batched[1].ids == expected);

  // Logits of both reference rows, the second cut to 17 tokens and left-padded by 7.
  torch::NoGradGuard no_grad;
  torch::Tensor ids = input_ids.clone();
  ids[1].narrow(0, 7, 17).copy_(input_ids[1].narrow(0, 0, 17));
  ids[1].narrow(0, 0, 7).fill_(0);
  torch::Tensor positions = torch::arange(24, torch::kInt64).repeat({2, 1});
  positions[1] = (positions[1] - 7).clamp_min(0);
  torch::Tensor valid = torch::ones({2, 24}, torch::kBool);
  valid[1].narrow(0, 0, 7).fill_(false);
  KvCache cache = model.make_cache(2, 24);
  torch::Tensor logits = model.forward(ids, LeftPadding{positions, valid}, cache);  // (2, 24, V)
  torch::Tensor expected_logits = reference.tensor("logits");                 // (2, 24, V)
  CHECK(relative_error(logits[0], expected_logits[0]) <= 1e-5);
  CHECK(relative_error(logits[1].narrow(0, 7, 17), expected_logits[1].narrow(0, 0, 17)) <= 1e-5);
}

TEST_CASE("scaled_dot_product_attention equals the eager path, with and without a past", "[model][attention]") {
  torch::manual_seed(17);
  // GQA 4:2, odd lengths; a prefill (no past), a chunk after a past, and one decoded token.
  const std::int64_t B = 2, H = 4, KvH = 2, D = 16;
  for (auto [T, past] : {std::pair<std::int64_t, std::int64_t>{13, 0}, {5, 8}, {1, 12}}) {
    INFO("T " << T << ", past " << past);
    torch::Tensor query = torch::randn({B, H, T, D}, torch::kFloat32);
    torch::Tensor keys = torch::randn({B, KvH, past + T, D}, torch::kFloat32);
    torch::Tensor values = torch::randn({B, KvH, past + T, D}, torch::kFloat32);
    torch::Tensor sdpa = causal_attention(query, keys, values, past, AttentionKind::kSdpa);
    torch::Tensor eager = causal_attention(query, keys, values, past, AttentionKind::kEager);
    CHECK(sdpa.sizes() == eager.sizes());
    CHECK(relative_error(sdpa, eager) <= 1e-6);
  }
  // The gradients through both agree too.
  torch::Tensor query = torch::randn({B, H, 9, D}, torch::kFloat32).requires_grad_(true);
  torch::Tensor keys = torch::randn({B, KvH, 9, D}, torch::kFloat32).requires_grad_(true);
  torch::Tensor values = torch::randn({B, KvH, 9, D}, torch::kFloat32).requires_grad_(true);
  torch::Tensor weights = torch::randn({B, H, 9, D}, torch::kFloat32);
  std::vector<torch::Tensor> grads[2];
  for (int which = 0; which < 2; ++which) {
    torch::Tensor out = causal_attention(query, keys, values, 0, which == 0 ? AttentionKind::kSdpa : AttentionKind::kEager);
    grads[which] = torch::autograd::grad({(out * weights).sum()}, {query, keys, values});
  }
  for (int i = 0; i < 3; ++i) CHECK(relative_error(grads[0][i], grads[1][i]) <= 1e-5);
  // On CPU, SDPA runs a fused kernel or the math path; either way it is named.
  const std::string backend = sdpa_backend(query.detach(), keys.detach(), values.detach());
  INFO("SDPA backend on CPU: " << backend);
  CHECK((backend == "flash" || backend == "math"));
  CHECK_THROWS_WITH(attention_from_name("flash"), Contains("sdpa") && Contains("eager"));
}

TEST_CASE("the KV cache gives the logits of a full forward", "[model][generate]") {
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(5);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::randint(0, 512, {2, 20}, torch::kInt64);
  torch::Tensor full = model.forward(ids);  // (2, 20, V)
  // Prefill 7 positions, then a chunk of 5, then one at a time; the cache
  // starts small so it has to grow.
  KvCache cache = model.make_cache(2, 4);
  std::vector<torch::Tensor> pieces;
  pieces.push_back(model.forward(ids.narrow(1, 0, 7), &cache));
  pieces.push_back(model.forward(ids.narrow(1, 7, 5), &cache));
  for (std::int64_t t = 12; t < 20; ++t) pieces.push_back(model.forward(ids.narrow(1, t, 1), &cache));
  CHECK(cache.length() == 20);
  CHECK(cache.capacity() >= 20);
  CHECK(relative_error(torch::cat(pieces, 1), full) <= 1e-5);
}

TEST_CASE("sampling is seeded, reproducible and respects top-p", "[model][generate]") {
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(9);
  GenerationOptions options;
  options.greedy = false;
  options.temperature = 1.5;
  options.max_new_tokens = 24;
  options.seed = 42;
  auto first = generate(model, {1, 2, 3}, options);
  CHECK(first.size() == 24);
  CHECK(generate(model, {1, 2, 3}, options) == first);
  options.seed = 43;
  CHECK(generate(model, {1, 2, 3}, options) != first);
  // top_p so small that only the most likely token survives: sampling becomes greedy.
  options.top_p = 1e-9;
  GenerationOptions greedy;
  greedy.max_new_tokens = 24;
  CHECK(generate(model, {1, 2, 3}, options) == generate(model, {1, 2, 3}, greedy));
  // Stop on eos: with eos set to the first greedy token, generation stops at once.
  LlamaConfig config = LlamaConfig::preset("debug-tiny");
  auto greedy_tokens = generate(model, {1, 2, 3}, greedy);
  config.eos_token_ids = {greedy_tokens[0]};
  LlamaModel copy(config);
  for (std::size_t u = 0; u < copy.flat_parameters().size(); ++u) {
    torch::NoGradGuard no_grad;
    copy.flat_parameters()[u].copy_(model.flat_parameters()[u]);
  }
  greedy.stop_on_eos = true;
  CHECK(generate(copy, {1, 2, 3}, greedy) == std::vector<std::int64_t>{greedy_tokens[0]});
  CHECK_THROWS_WITH(generate(model, {1, 600}, greedy), Contains("600"));
}

namespace {

// Greedy tokens of one prompt through LlamaModel::forward and a one-row
// cache: the unpadded path the batched generator must agree with.
std::vector<std::int64_t> forward_greedy(const LlamaModel& model, const std::vector<std::int64_t>& prompt,
                                         std::int64_t count) {
  torch::NoGradGuard no_grad;
  KvCache cache = model.make_cache(1, static_cast<std::int64_t>(prompt.size()) + count);
  torch::Tensor logits = model.forward(torch::tensor(prompt, torch::kInt64).view({1, -1}), &cache);  // (1, T, V)
  std::vector<std::int64_t> tokens;
  for (std::int64_t step = 0; step < count; ++step) {
    tokens.push_back(logits[0][logits.size(1) - 1].argmax().item<std::int64_t>());
    logits = model.forward(torch::tensor(std::vector<std::int64_t>{tokens.back()}, torch::kInt64).view({1, 1}), &cache);
  }
  return tokens;
}

}  // namespace

TEST_CASE("batched generation gives every prompt its single-sequence greedy tokens", "[model][generate]") {
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(11);
  // Different lengths (the longest sets the padding of the others), one of a single token.
  const std::vector<std::vector<std::int64_t>> prompts = {
      {5, 17, 300}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {42}, {7, 7, 7, 7, 100, 200}, {511, 0, 256, 9}};
  GenerationOptions options;
  options.max_new_tokens = 12;
  std::vector<std::vector<std::int64_t>> expected;
  for (const auto& prompt : prompts) expected.push_back(forward_greedy(model, prompt, options.max_new_tokens));
  for (AttentionKind attention : {AttentionKind::kSdpa, AttentionKind::kEager}) {
    for (bool use_cache : {true, false}) {
      INFO("attention " << attention_name(attention) << ", cache " << use_cache);
      model.set_attention(attention);
      options.use_cache = use_cache;
      auto batched = generate_batch(model, prompts, options);
      REQUIRE(batched.size() == prompts.size());
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        INFO("prompt " << i);
        CHECK(batched[i].ids == expected[i]);
        CHECK(batched[i].stop == -1);
      }
    }
  }
  model.set_attention(AttentionKind::kSdpa);
  options.use_cache = true;

  // A stop per sequence: stop on prompt 1's 4th token; each row ends at its
  // own first occurrence of it (or runs to the budget), and leaves the batch.
  const std::int64_t stop = expected[1][3];
  options.stop_ids = {stop};
  auto stopped = generate_batch(model, prompts, options);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << i);
    auto at = std::find(expected[i].begin(), expected[i].end(), stop);
    CHECK(stopped[i].ids == std::vector<std::int64_t>(expected[i].begin(), at));
    CHECK(stopped[i].stop == (at == expected[i].end() ? -1 : stop));
  }
  CHECK(stopped[1].ids.size() <= 3);
  // generate() is a batch of one, with the stop token last.
  auto single = generate(model, prompts[1], options);
  CHECK(single == std::vector<std::int64_t>(expected[1].begin(), std::find(expected[1].begin(), expected[1].end(), stop) + 1));

  // The padded forward's logits for a left-padded row equal the row's own forward.
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::tensor(std::vector<std::int64_t>{0, 0, 0, 5, 17, 300, 8}, torch::kInt64).view({1, -1});
  torch::Tensor positions = torch::tensor(std::vector<std::int64_t>{0, 0, 0, 0, 1, 2, 3}, torch::kInt64).view({1, -1});
  torch::Tensor valid = (torch::arange(7) >= 3).view({1, -1});
  KvCache cache = model.make_cache(1, 7);
  torch::Tensor padded = model.forward(ids, LeftPadding{positions, valid}, cache).narrow(1, 3, 4);  // (1, 4, V)
  torch::Tensor alone = model.forward(ids.narrow(1, 3, 4));
  CHECK(relative_error(padded, alone) <= 1e-5);
  CHECK(cache.length() == 7);
  CHECK_THROWS_WITH(generate_batch(model, {{1, 2}, {}}, options), Contains("prompt 1"));
  CHECK_THROWS_WITH(generate_batch(model, {{1, 2}}, options, {1, 2}), Contains("2 sequence ids for 1 prompts"));
}

TEST_CASE("batched generation reads no scalar from a tensor per token", "[model][generate]") {
  // A device wait per token beyond the copy of the chosen ids would stall a
  // GPU's queue every step; on the CPU that copy is no copy at all, so every
  // scalar read counted here is one that would also wait on a GPU.
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(11);
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 17, 300}, {1, 2, 3, 4, 5, 6, 7}, {42}, {9, 8}};
  for (bool greedy : {true, false}) {
    GenerationOptions options;
    options.max_new_tokens = 10;
    options.greedy = greedy;
    options.temperature = 0.8;
    options.top_p = 0.9;
    // A stop that one row meets early: rows leave the batch on the way.
    options.stop_ids = {generate_batch(model, {prompts[1]}, options, {1}).front().ids.at(2)};
    test::SyncCounter counter;
    auto out = generate_batch(model, prompts, options, {0, 1, 2, 3});
    INFO("greedy " << greedy);
    CHECK(out[1].ids.size() <= 2);
    CHECK(counter.count() == 0);
  }
}

TEST_CASE("sampled tokens do not depend on the batch a sequence runs in", "[model][generate]") {
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(13);
  GenerationOptions options;
  options.greedy = false;
  options.temperature = 1.5;
  options.max_new_tokens = 16;
  options.seed = 7;
  const std::vector<std::vector<std::int64_t>> prompts = {{3, 4, 5}, {9, 8, 7, 6, 5, 4, 3, 2}, {100}};
  auto together = generate_batch(model, prompts, options, {10, 11, 12});
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt " << i);
    // Alone, or with another neighbour, under the same sequence id: the same draws.
    CHECK(generate_batch(model, {prompts[i]}, options, {10 + i}).front().ids == together[i].ids);
    CHECK(generate_batch(model, {prompts[(i + 1) % 3], prompts[i]}, options, {99, 10 + i})[1].ids == together[i].ids);
  }
  // Another sequence id is another stream.
  CHECK(generate_batch(model, {prompts[0]}, options, {11}).front().ids != together[0].ids);
}

// ------------------------------------------------------- loading and saving ----

TEST_CASE("saving writes a folder that loads back to the same model", "[model][safetensors]") {
  LlamaModel model(LlamaConfig::preset("debug-tiny"));
  model.init_weights(13);
  auto dir = test::temp_dir("model-save");
  save_hf_model(model, (dir / "single").string());
  save_hf_model(model, (dir / "sharded").string(), 100'000);
  // Tied: like save_pretrained, no lm_head.weight is stored.
  SafetensorsFile single((dir / "single" / "model.safetensors").string());
  CHECK_FALSE(single.contains("lm_head.weight"));
  CHECK(single.names().size() == 20);
  CHECK(fs::exists(dir / "sharded" / "model.safetensors.index.json"));
  for (const char* variant : {"single", "sharded"}) {
    LlamaModel loaded = load_model(*open_model_source((dir / variant).string()));
    for (std::size_t u = 0; u < model.flat_parameters().size(); ++u) {
      CHECK(torch::equal(loaded.flat_parameters()[u], model.flat_parameters()[u]));
    }
  }
  // Untied models store the head.
  LlamaConfig untied = LlamaConfig::preset("debug-tiny");
  untied.tie_word_embeddings = false;
  LlamaModel untied_model(untied);
  untied_model.init_weights(1);
  save_hf_model(untied_model, (dir / "untied").string());
  CHECK(SafetensorsFile((dir / "untied" / "model.safetensors").string()).contains("lm_head.weight"));
  LlamaModel untied_loaded = load_model(*open_model_source((dir / "untied").string()));
  CHECK(torch::equal(untied_loaded.parameter("lm_head.weight"), untied_model.parameter("lm_head.weight")));
  CHECK_FALSE(torch::equal(untied_loaded.parameter("lm_head.weight"), untied_loaded.parameter("model.embed_tokens.weight")));
}

TEST_CASE("saving the fixture reproduces transformers' files byte for byte", "[model][safetensors][parity]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  LlamaModel model = load_fixture(fixture);
  auto dir = test::temp_dir("model-save-bytes");
  auto bytes = [](const fs::path& path) { return test::read_file(path); };
  // The fixture was written by save_pretrained (max_shard_size="100KB" for the sharded copy).
  save_hf_model(model, (dir / "single").string());
  save_hf_model(model, (dir / "sharded").string(), 100'000);
  CHECK(bytes(dir / "single" / "model.safetensors") == bytes(fixture / "model.safetensors"));
  int compared = 0;
  for (const auto& entry : fs::directory_iterator(fixture / "sharded")) {
    if (entry.path().filename() == "config.json") continue;
    INFO(entry.path().filename().string());
    CHECK(bytes(dir / "sharded" / entry.path().filename()) == bytes(entry.path()));
    ++compared;
  }
  CHECK(compared == 6);  // five shards and the index
}

TEST_CASE("checkpoint mismatches name the tensor and the file", "[model][safetensors]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  auto load_error = [](const fs::path& dir) {
    try {
      load_model(*open_model_source(dir.string()));
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string norm = "model.layers.1.post_attention_layernorm.weight";

  auto missing = fixture_variant(fixture, "missing", [&](auto& tensors) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [&](auto& t) { return t.first == norm; }), tensors.end());
  });
  CHECK_THAT(load_error(missing), Contains(norm) && Contains("missing") && Contains((missing / "model.safetensors").string()));

  auto unexpected = fixture_variant(fixture, "unexpected",
                                    [](auto& tensors) { tensors.emplace_back("model.layers.9.extra.weight", torch::ones({2})); });
  CHECK_THAT(load_error(unexpected), Contains("unexpected") && Contains("model.layers.9.extra.weight") &&
                                         Contains((unexpected / "model.safetensors").string()));

  auto wrong_shape = fixture_variant(fixture, "shape", [&](auto& tensors) {
    for (auto& t : tensors) {
      if (t.first == norm) t.second = torch::ones({65});
    }
  });
  CHECK_THAT(load_error(wrong_shape), Contains(norm) && Contains("[65]") && Contains("[64]") &&
                                          Contains((wrong_shape / "model.safetensors").string()));

  auto bad_dtype = test::temp_dir("model-dtype");
  fs::copy_file(fixture / "config.json", bad_dtype / "config.json");
  // model.safetensors with a correct header but one tensor in a dtype we do not read.
  {
    auto header = nlohmann::json::object();
    std::string data;
    SafetensorsFile file((fixture / "model.safetensors").string());
    for (const auto& name : file.names()) {
      torch::Tensor tensor = file.tensor(name);
      std::string dtype = name == norm ? "F8_E5M2" : "F32";
      if (name == norm) tensor = torch::zeros({64}, torch::kUInt8);
      header[name] = {{"dtype", dtype}, {"shape", tensor.sizes().vec()},
                      {"data_offsets", {data.size(), data.size() + tensor.numel() * tensor.element_size()}}};
      data.append(static_cast<const char*>(tensor.data_ptr()), tensor.numel() * tensor.element_size());
    }
    std::string text = header.dump();
    std::ofstream out(bad_dtype / "model.safetensors", std::ios::binary);
    std::uint64_t length = text.size();
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << text << data;
  }
  CHECK_THAT(load_error(bad_dtype), Contains(norm) && Contains("F8_E5M2") && Contains("not supported") &&
                                        Contains((bad_dtype / "model.safetensors").string()));

  CHECK_THAT(load_error("/nonexistent/model"), Contains("does not exist"));
  CHECK_THAT(load_error(fixture / "model.safetensors"), Contains("not a folder"));
}

// ---------------------------------------------------------------------- CLI ----

TEST_CASE("metareuse forward writes transformers' logits and loss", "[model][cli][e2e]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  SafetensorsFile reference((fixture / "reference.safetensors").string());
  auto dir = test::temp_dir("model-cli-forward");
  write_safetensors((dir / "ids.safetensors").string(), {{"input_ids", reference.tensor("input_ids")}});
  auto result = test::run_metareuse(fmt::format("forward --model {} --ids {} --out {}", fixture.string(),
                                                (dir / "ids.safetensors").string(), (dir / "out.safetensors").string()));
  INFO(result.output);
  REQUIRE(result.status == 0);
  SafetensorsFile out((dir / "out.safetensors").string());
  CHECK(out.entry("logits").dtype == "F32");
  CHECK(relative_error(out.tensor("logits"), reference.tensor("logits")) <= 1e-5);
  CHECK(std::abs(out.tensor("loss").item<double>() - reference.tensor("loss").item<double>()) <= 1e-4);
  CHECK_THAT(result.output, Contains("\"loss\""));

  auto missing = test::run_metareuse(fmt::format("forward --model {} --ids {} --out {}", fixture.string(),
                                                 (fixture / "model.safetensors").string(), (dir / "x.safetensors").string()));
  CHECK(missing.status == 1);
  CHECK_THAT(missing.output, Contains("input_ids") && Contains("model.safetensors"));
}

TEST_CASE("metareuse generate prints transformers' greedy tokens", "[model][cli][e2e]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  SafetensorsFile reference((fixture / "reference.safetensors").string());
  auto prompt = to_vector(reference.tensor("gen_prompt"));
  auto expected = to_vector(reference.tensor("gen_greedy"));
  const std::string model = "--model " + fixture.string();
  const std::string prompt_flag = fmt::format(" --prompt-ids {}", fmt::join(prompt, ","));

  auto greedy = test::run_metareuse("generate " + model + prompt_flag + " --max-new-tokens 16 --greedy");
  INFO(greedy.output);
  REQUIRE(greedy.status == 0);
  auto line = nlohmann::json::parse(greedy.output.substr(greedy.output.find("{\"ids\"")));
  CHECK(line["ids"].get<std::vector<std::int64_t>>() == expected);
  CHECK_FALSE(line.contains("text"));

  auto sample = [&](int seed) {
    auto result = test::run_metareuse("generate " + model + prompt_flag +
                                      fmt::format(" --max-new-tokens 12 --temperature 1.3 --top-p 0.9 --seed {}", seed));
    REQUIRE(result.status == 0);
    return nlohmann::json::parse(result.output.substr(result.output.find("{\"ids\"")))["ids"];
  };
  CHECK(sample(5) == sample(5));
  CHECK(sample(5) != sample(6));

  auto text = test::run_metareuse("generate " + model + " --prompt hello --tokenizer missing-t.json --max-new-tokens 2");
  CHECK(text.status == 1);
  CHECK_THAT(text.output, Contains("missing-t.json"));
  auto no_tokenizer = test::run_metareuse("generate " + model + " --prompt hello --max-new-tokens 2");
  CHECK(no_tokenizer.status == 64);
  CHECK_THAT(no_tokenizer.output, Contains("--tokenizer"));
  auto bad_ids = test::run_metareuse("generate " + model + " --prompt-ids 1,x,3");
  CHECK(bad_ids.status == 64);
  CHECK_THAT(bad_ids.output, Contains("'x'"));
  auto conflicting = test::run_metareuse("generate " + model + prompt_flag + " --greedy --temperature 0.5");
  CHECK(conflicting.status == 64);
}

// By default a generation ends at the model's eos (printed last); --no-stop
// goes on to --max-new-tokens. The eos is made a token the fixture's greedy
// run emits, in a copy of the folder with that config.json eos_token_id.
TEST_CASE("metareuse generate stops at the model's eos by default, and --no-stop goes on", "[model][cli][e2e]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  const fs::path copy = test::temp_dir("generate-stop") / "model";
  fs::create_directories(copy);
  fs::copy_file(fixture / "model.safetensors", copy / "model.safetensors");
  auto ids_of = [](const test::CommandResult& result) {
    const std::string from = result.output.substr(result.output.find("{\"ids\""));
    return nlohmann::json::parse(from.substr(0, from.find('\n')))["ids"].get<std::vector<std::int64_t>>();
  };
  nlohmann::json config = nlohmann::json::parse(std::ifstream(fixture / "config.json"));
  std::ofstream(copy / "config.json") << config.dump();
  const std::string args = "generate --model " + copy.string() + " --prompt-ids 1,2,3 --max-new-tokens 12 --greedy";
  auto full = test::run_metareuse(args + " --no-stop");
  INFO(full.output);
  REQUIRE(full.status == 0);
  const std::vector<std::int64_t> all = ids_of(full);
  REQUIRE(all.size() == 12);
  // The fourth token as eos: the default run ends at its first use.
  const std::int64_t eos = all[3];
  config["eos_token_id"] = eos;
  std::ofstream(copy / "config.json") << config.dump();
  auto stopped = test::run_metareuse(args);
  INFO(stopped.output);
  REQUIRE(stopped.status == 0);
  const auto first = std::find(all.begin(), all.end(), eos);
  CHECK(ids_of(stopped) == std::vector<std::int64_t>(all.begin(), first + 1));
  CHECK(ids_of(test::run_metareuse(args + " --no-stop")) == all);
}

// `metareuse generate ... | jq` reads stdout: one JSON object a line, no log line.
TEST_CASE("metareuse generate prints only its JSON lines on stdout", "[model][cli][e2e]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  auto result = test::run_metareuse_split("generate --model " + fixture.string() +
                                          " --prompt-ids 1,2,3 --max-new-tokens 4 --greedy");
  INFO(result.out << "\n--- stderr ---\n" << result.err);
  REQUIRE(result.status == 0);
  std::istringstream lines(result.out);
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    INFO(line);
    CHECK(nlohmann::json::accept(line));
    ++parsed;
  }
  CHECK(parsed == 1);
}

// A hostile model folder through the CLI: exit 1 with the file named, not a
// crash (a stack overflow on deep JSON, a read outside the folder).
TEST_CASE("generate refuses hostile model folders with exit 1, naming the file", "[model][cli][e2e][hostile]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  auto fixture = fixture_dir(shared);
  auto dir = test::temp_dir("hostile-folders");
  auto generate = [](const fs::path& model) {
    return test::run_metareuse("generate --model " + model.string() + " --prompt-ids 1,2,3 --max-new-tokens 2");
  };
  const fs::path deep = dir / "deep-config";
  fs::create_directories(deep);
  fs::copy_file(fixture / "model.safetensors", deep / "model.safetensors");
  std::ofstream(deep / "config.json") << "{\"rope_scaling\": " << std::string(100000, '[') << std::string(100000, ']')
                                      << "}";
  auto deep_result = generate(deep);
  INFO(deep_result.output);
  CHECK(deep_result.status == 1);
  CHECK_THAT(deep_result.output, Contains((deep / "config.json").string()) && Contains("nested deeper than 64"));

  const fs::path escape = dir / "escape";
  fs::create_directories(escape);
  fs::copy_file(fixture / "config.json", escape / "config.json");
  fs::copy_file(fixture / "model.safetensors", dir / "elsewhere.safetensors");
  nlohmann::json weight_map;
  for (const auto& name : SafetensorsFile((fixture / "model.safetensors").string()).names()) {
    weight_map[name] = "../elsewhere.safetensors";
  }
  std::ofstream(escape / "model.safetensors.index.json") << nlohmann::json{{"weight_map", weight_map}}.dump();
  auto escape_result = generate(escape);
  INFO(escape_result.output);
  CHECK(escape_result.status == 1);
  CHECK_THAT(escape_result.output, Contains("../elsewhere.safetensors") && Contains("not a file in the index's folder"));
}

TEST_CASE("bf16 is refused below sm_80", "[model][cuda]") {
  CHECK_FALSE(compute_capability_has_bf16(6, 0));  // P100: train in fp16 there
  CHECK_FALSE(compute_capability_has_bf16(7, 0));  // V100
  CHECK_FALSE(compute_capability_has_bf16(7, 5));  // T4
  CHECK(compute_capability_has_bf16(8, 0));        // A100
  CHECK(compute_capability_has_bf16(9, 0));        // H100 / H200
}

TEST_CASE("a build's CUDA architecture list decides which GPUs it runs on", "[model][cuda]") {
  // torch 2.11+cu130's list, and a cu126 build's.
  const std::vector<std::string> cu130 = {"sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"};
  const std::vector<std::string> cu126 = {"sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"};
  CHECK_FALSE(arch_list_runs_on(cu130, 6, 0));  // P100
  CHECK(arch_list_runs_on(cu126, 6, 0));
  CHECK(arch_list_runs_on(cu130, 9, 0));        // H100 / H200
  CHECK(arch_list_runs_on(cu126, 9, 0));
  CHECK(arch_list_runs_on(cu130, 8, 9));        // L40: the sm_86 cubin runs on 8.9
  CHECK_FALSE(arch_list_runs_on({"sm_86"}, 8, 0));  // a cubin never runs on a lower minor
  CHECK_FALSE(arch_list_runs_on({"sm_90"}, 10, 0)); // nor on another major
  CHECK(arch_list_runs_on({"compute_90"}, 10, 0));  // PTX is compiled for newer GPUs at load
  CHECK_FALSE(arch_list_runs_on({"compute_90"}, 8, 0));
  CHECK_FALSE(arch_list_runs_on({}, 9, 0));
  // The linked libtorch's own list is known without a GPU (the PyPI wheel is a CUDA build).
  CudaBuild build = cuda_build();
  INFO("libtorch CUDA " << build.cuda_version << ", kernels for " << build.arch_list.size() << " architectures");
  if (build.torch_has_cuda) {
    CHECK_FALSE(build.cuda_version.empty());
    CHECK_FALSE(build.arch_list.empty());
  }
}

// --------------------------------------------------------- packed documents ----

// Reference: tests/reference/packed_reference.py runs transformers
// (DataCollatorWithFlattening + LlamaForCausalLM with position_ids, which
// masks attention per document) on the fixture, live, in the shared venv.
TEST_CASE("packed rows match transformers' padding-free packing (position_ids)", "[model][parity][packing]") {
  METAREUSE_SKIP_UNLESS_SHARED(shared);
  if (test::run_shell(std::string("'") + METAREUSE_PYTHON + "' -c 'import transformers, safetensors' 2>/dev/null").status !=
      0) {
    METAREUSE_SKIP(std::string("transformers is not importable by ") + METAREUSE_PYTHON);
    return;
  }
  auto dir = fixture_dir(shared);
  LlamaModel model = load_fixture(dir);
  for (AttentionKind attention : {AttentionKind::kSdpa, AttentionKind::kEager}) {
    INFO("attention " << attention_name(attention));
    const fs::path out = test::temp_dir("packed-reference") / "packed.safetensors";
    test::CommandResult made = test::run_shell(std::string("'") + METAREUSE_PYTHON + "' '" + METAREUSE_SOURCE_DIR +
                                               "/tests/reference/packed_reference.py' '" + dir.string() + "' '" +
                                               out.string() + "' " + attention_name(attention) + " 2>&1");
    INFO(made.output);
    REQUIRE(made.status == 0);
    SafetensorsFile reference(out.string());
    torch::Tensor ids = reference.tensor("input_ids");          // (1, T)
    torch::Tensor positions = reference.tensor("position_ids");  // (1, T)
    // A new document wherever the position restarts at 0.
    torch::Tensor segments = positions.eq(0).to(torch::kInt64).cumsum(1) - 1;  // (1, T)
    REQUIRE(segments.max().item<int64_t>() == 3);

    model.set_attention(attention);
    torch::NoGradGuard no_grad;
    torch::Tensor logits = model.forward(ids, DocumentLayout{positions, segments});  // (1, T, V)
    const double error = relative_error(logits, reference.tensor("logits"));
    INFO("logits relative error " << error);
    CHECK(error <= 1e-5);
    torch::Tensor targets = next_token_targets(ids, {}, segments);
    const double loss = (token_loss_sum(logits, targets) / targets.ne(-100).sum()).item<double>();
    const double reference_loss = reference.tensor("loss").item<double>();
    CHECK(std::abs(loss - reference_loss) <= 1e-5 * reference_loss);
    // Without the document layout the same row gives other logits: the test can tell.
    CHECK(relative_error(model.forward(ids), reference.tensor("logits")) > 1e-3);
  }
}

TEST_CASE("the document mask is block-diagonal causal and padding attends only itself", "[model][packing]") {
  torch::Tensor segments = torch::tensor({0, 0, 1, 1, 1, -1}, torch::kInt64).unsqueeze(0);  // (1, 6)
  torch::Tensor mask = document_attention_mask(segments)[0][0];                             // (6, 6)
  torch::Tensor expected = torch::tensor({1, 0, 0, 0, 0, 0,  //
                                          1, 1, 0, 0, 0, 0,  //
                                          0, 0, 1, 0, 0, 0,  //
                                          0, 0, 1, 1, 0, 0,  //
                                          0, 0, 1, 1, 1, 0,  //
                                          0, 0, 0, 0, 0, 1},
                                         torch::kBool)
                               .view({6, 6});
  CHECK(torch::equal(mask, expected));
  // Targets never cross into the next document or into padding.
  torch::Tensor ids = torch::arange(10, 16, torch::kInt64).unsqueeze(0);
  torch::Tensor targets = next_token_targets(ids, {}, segments);
  CHECK(torch::equal(targets[0], torch::tensor({11, -100, 13, 14, -100, -100}, torch::kInt64)));
}
