// Sentencepiece, linked directly. With Debian's libtorch 1.13 a process that
// linked both segfaulted before main (the two protobuf copies met), so this
// went through a dlopen'ed shim. The PyPI libtorch 2.11 keeps its protobuf
// internal (libtorch_cpu exports 34 protobuf template instances, none of them
// shared with libsentencepiece but three byteswap<N> helpers), and a probe
// linking both in either order trained, loaded and encoded (docs/gpu.md, the
// build stack).
#include "metareuse/tokenizer/sentencepiece.h"

#include <fmt/format.h>
#include <sentencepiece_processor.h>  // SentencePieceProcessor
#include <sentencepiece_trainer.h>    // SentencePieceTrainer

#include "metareuse/core/error.h"
#include "sentencepiece_tokenizer.h"

namespace metareuse {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, std::string file_hash) {
    file_hash_ = std::move(file_hash);
    auto status = processor_.Load(path);
    if (!status.ok()) throw InputError(fmt::format("{}: not a valid sentencepiece model: {}", path, status.ToString()));
  }

  TokenizerKind kind() const override { return TokenizerKind::kSentencePiece; }
  std::int64_t vocab_size() const override { return processor_.GetPieceSize(); }

  // Sentencepiece never turns text into control symbols (<s>, </s>), so plain
  // encoding already keeps corpus text out of the special tokens.
  std::vector<TokenId> encode(std::string_view text) const override {
    std::vector<int> ids;
    auto status = processor_.Encode(text, &ids);
    if (!status.ok()) throw InputError(fmt::format("sentencepiece encode failed: {}", status.ToString()));
    return std::vector<TokenId>(ids.begin(), ids.end());
  }

  // Control-symbol text ("<s>", "</s>") becomes the symbol's id; the rest is
  // ordinary text.
  std::vector<TokenId> encode_with_special(std::string_view text) const override {
    std::vector<TokenId> out;
    std::size_t segment_start = 0;
    for (std::size_t position = text.find('<'); position != std::string_view::npos;
         position = text.find('<', position + 1)) {
      std::size_t close = text.find('>', position);
      if (close == std::string_view::npos) break;
      std::string_view candidate = text.substr(position, close - position + 1);
      auto id = special_id(candidate);
      if (!id) continue;
      auto before = encode(text.substr(segment_start, position - segment_start));
      out.insert(out.end(), before.begin(), before.end());
      out.push_back(*id);
      segment_start = close + 1;
      position = close;
    }
    auto rest = encode(text.substr(segment_start));
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  }

  std::string decode(const std::vector<TokenId>& ids) const override {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= vocab_size()) {
        throw InputError(fmt::format("token id {} at position {} is not in the vocabulary (size {})", ids[i], i,
                                     vocab_size()));
      }
    }
    std::string text;
    auto status = processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok()) throw InputError(fmt::format("sentencepiece decode failed: {}", status.ToString()));
    return text;
  }

  std::optional<TokenId> special_id(std::string_view text) const override {
    int id = processor_.PieceToId(text);
    if (processor_.IsUnknown(id) || !processor_.IsControl(id)) return std::nullopt;
    return id;
  }
  TokenId bos_id() const override { return processor_.bos_id(); }
  TokenId eos_id() const override { return processor_.eos_id(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

void train_sentencepiece(const SentencePieceTrainOptions& options) {
  if (options.input_file.empty() || options.model_prefix.empty()) {
    throw Error("train_sentencepiece: input_file and model_prefix are required");
  }
  if (options.vocab_size < 8) throw Error(fmt::format("train_sentencepiece: vocab_size {} is too small", options.vocab_size));
  // Sentencepiece parses this flag string itself; paths are passed as one
  // flag each, so they may not contain spaces.
  for (const std::string* path : {&options.input_file, &options.model_prefix}) {
    if (path->find(' ') != std::string::npos) {
      throw Error(fmt::format("train_sentencepiece: path '{}' contains a space, which sentencepiece's flag parser "
                              "cannot take", *path));
    }
  }
  std::string args = fmt::format(
      "--input={} --model_prefix={} --vocab_size={} --model_type={} --character_coverage={} --byte_fallback={} "
      "--input_sentence_size={} --shuffle_input_sentence=true --split_digits=true "
      // Identity normalisation and kept whitespace: decode(encode(x)) == x,
      // newlines included (they are byte-fallback pieces, as the trainer reads lines).
      "--normalization_rule_name=identity --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true "
      "--minloglevel=1",
      options.input_file, options.model_prefix, options.vocab_size, options.model_type, options.character_coverage,
      options.byte_fallback ? "true" : "false", options.input_sentence_size);
  auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    throw Error(fmt::format("sentencepiece training on {} failed: {}", options.input_file, status.ToString()));
  }
}

namespace tokenizer_detail {

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, std::string file_hash) {
  return std::make_unique<SentencePieceTokenizer>(path, std::move(file_hash));
}

}  // namespace tokenizer_detail
}  // namespace metareuse
