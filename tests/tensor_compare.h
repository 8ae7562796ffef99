// Comparing tensors with a reference, for the tests that replay transformers
// (test_model, test_train, test_hf, test_real). Include after torch_catch.h.
#pragma once

#include <cstdint>
#include <vector>

namespace metareuse::test {

// max |a - b| / max |b|: the error relative to the reference's scale.
inline double relative_error(const torch::Tensor& actual, const torch::Tensor& reference) {
  return (actual.to(torch::kFloat64) - reference.to(torch::kFloat64)).abs().max().item<double>() /
         reference.to(torch::kFloat64).abs().max().item<double>();
}

// A tensor's values as int64, in order (token ids).
inline std::vector<std::int64_t> to_vector(const torch::Tensor& tensor) {
  torch::Tensor flat = tensor.to(torch::kInt64).contiguous().view({-1});
  return std::vector<std::int64_t>(flat.data_ptr<std::int64_t>(), flat.data_ptr<std::int64_t>() + flat.numel());
}

}  // namespace metareuse::test
