// A Tokenizer over a sentencepiece model (sentencepiece.cpp).
#pragma once

#include <memory>
#include <string>

#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse::tokenizer_detail {

// Throws InputError when sentencepiece rejects the model.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, std::string file_hash);

}  // namespace metareuse::tokenizer_detail
