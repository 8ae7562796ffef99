// SentencePiece through the shim library (libmetareuse_sentencepiece_shim.so).
//
// Debian's libsentencepiece exports its own copies of protobuf internals, and a
// process that links it next to libtorch segfaults before main (FACTS.md).
// So nothing in metareuse links sentencepiece: the shim does, and it is opened
// with dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND), which keeps its protobuf
// symbols out of the global namespace.
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

// The shim's path: $METAREUSE_SENTENCEPIECE_SHIM, else next to the running
// binary (<bin>/../lib), else the build tree's copy.
std::string sentencepiece_shim_path();

}  // namespace metareuse
