// SentencePiece models: training, and loading one as a Tokenizer (load.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace metareuse {

class Tokenizer;

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

// Trains a sentencepiece tokenizer on a corpus into `model` (which must end in
// .model) and loads it. The training text is each string field of each JSON
// Lines record (.jsonl), or the file's lines as they are; it is written next
// to the model as <model>.train.txt and removed afterwards. Not collective.
std::unique_ptr<Tokenizer> train_sentencepiece_on_corpus(const std::string& corpus, const std::string& model,
                                                         std::int64_t vocab_size, const std::string& model_type);

}  // namespace metareuse
