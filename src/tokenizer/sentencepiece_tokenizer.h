// A Tokenizer over a sentencepiece model, reached through the shim library.
#pragma once

#include <memory>
#include <string>

#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse::tokenizer_detail {

// Throws InputError when the shim cannot be opened or rejects the model.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, std::string file_hash);

}  // namespace metareuse::tokenizer_detail
