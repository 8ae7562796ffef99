// SentencePiece models: training, and loading one as a Tokenizer (load.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace metareuse {

struct SentencePieceTrainOptions {
  std::string input_file;    // plain text, one sentence (example) per line
  std::string model_prefix;  // writes <prefix>.model and <prefix>.vocab
  std::int64_t vocab_size = 8000;
  std::string model_type = "bpe";         // bpe | unigram | char | word
  double character_coverage = 1.0;
  bool byte_fallback = true;              // unknown characters become byte pieces, never <unk>
  std::int64_t input_sentence_size = 0;   // 0 = all lines
};

// Trains a model; throws Error with sentencepiece's message on failure.
void train_sentencepiece(const SentencePieceTrainOptions& options);

}  // namespace metareuse
