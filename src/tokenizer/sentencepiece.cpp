// Sentencepiece through libmetareuse_sentencepiece_shim.so, opened with
// dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND) so that its protobuf copy never
// meets libtorch's (the crash in FACTS.md).
#include "metareuse/tokenizer/sentencepiece.h"

#include <dlfcn.h>  // dlopen, dlsym
#include <fmt/format.h>
#include <unistd.h>  // readlink

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "metareuse/core/error.h"
#include "sentencepiece_shim.h"
#include "sentencepiece_tokenizer.h"

namespace metareuse {
namespace {

constexpr std::size_t kErrorSize = 1024;

// The shim's entry points. Opened once per process and never closed: the
// library's static protobuf state must outlive every processor.
struct Shim {
  decltype(&mr_sp_abi_version) abi_version = nullptr;
  decltype(&mr_sp_load) load = nullptr;
  decltype(&mr_sp_free) free = nullptr;
  decltype(&mr_sp_vocab_size) vocab_size = nullptr;
  decltype(&mr_sp_bos_id) bos_id = nullptr;
  decltype(&mr_sp_eos_id) eos_id = nullptr;
  decltype(&mr_sp_piece_to_id) piece_to_id = nullptr;
  decltype(&mr_sp_is_control) is_control = nullptr;
  decltype(&mr_sp_encode) encode = nullptr;
  decltype(&mr_sp_decode) decode = nullptr;
  decltype(&mr_sp_release) release = nullptr;
  decltype(&mr_sp_train) train = nullptr;
};

template <typename Function>
void bind(void* handle, const std::string& path, const char* name, Function& function) {
  function = reinterpret_cast<Function>(dlsym(handle, name));
  if (function == nullptr) throw Error(fmt::format("sentencepiece shim {} has no symbol '{}'", path, name));
}

const Shim& shim() {
  static std::once_flag once;
  static Shim instance;
  static std::string failure;
  std::call_once(once, [] {
    std::string path = sentencepiece_shim_path();
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      const char* reason = dlerror();
      failure = fmt::format("cannot open the sentencepiece shim {}: {} (set METAREUSE_SENTENCEPIECE_SHIM to its path)",
                            path, reason != nullptr ? reason : "unknown error");
      return;
    }
    try {
      bind(handle, path, "mr_sp_abi_version", instance.abi_version);
      if (instance.abi_version() != MR_SP_SHIM_ABI_VERSION) {
        throw Error(fmt::format("sentencepiece shim {} has ABI version {}, expected {} (rebuild it)", path,
                                instance.abi_version(), MR_SP_SHIM_ABI_VERSION));
      }
      bind(handle, path, "mr_sp_load", instance.load);
      bind(handle, path, "mr_sp_free", instance.free);
      bind(handle, path, "mr_sp_vocab_size", instance.vocab_size);
      bind(handle, path, "mr_sp_bos_id", instance.bos_id);
      bind(handle, path, "mr_sp_eos_id", instance.eos_id);
      bind(handle, path, "mr_sp_piece_to_id", instance.piece_to_id);
      bind(handle, path, "mr_sp_is_control", instance.is_control);
      bind(handle, path, "mr_sp_encode", instance.encode);
      bind(handle, path, "mr_sp_decode", instance.decode);
      bind(handle, path, "mr_sp_release", instance.release);
      bind(handle, path, "mr_sp_train", instance.train);
    } catch (const Error& e) {
      failure = e.what();
      instance = Shim{};
    }
  });
  if (!failure.empty()) throw Error(failure);
  return instance;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, std::string file_hash) : shim_(shim()) {
    file_hash_ = std::move(file_hash);
    char error[kErrorSize] = {0};
    processor_ = shim_.load(path.c_str(), error, sizeof(error));
    if (processor_ == nullptr) {
      throw InputError(fmt::format("{}: not a valid sentencepiece model: {}", path, error));
    }
  }
  ~SentencePieceTokenizer() override { shim_.free(processor_); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  TokenizerKind kind() const override { return TokenizerKind::kSentencePiece; }
  std::int64_t vocab_size() const override { return shim_.vocab_size(processor_); }

  // Sentencepiece never turns text into control symbols (<s>, </s>), so plain
  // encoding already keeps corpus text out of the special tokens.
  std::vector<TokenId> encode(std::string_view text) const override {
    int32_t* ids = nullptr;
    std::size_t count = 0;
    char error[kErrorSize] = {0};
    if (shim_.encode(processor_, text.data(), text.size(), &ids, &count, error, sizeof(error)) != 0) {
      throw InputError(fmt::format("sentencepiece encode failed: {}", error));
    }
    std::vector<TokenId> result(ids, ids + count);
    shim_.release(ids);
    return result;
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
    char* text = nullptr;
    std::size_t length = 0;
    char error[kErrorSize] = {0};
    if (shim_.decode(processor_, ids.data(), ids.size(), &text, &length, error, sizeof(error)) != 0) {
      throw InputError(fmt::format("sentencepiece decode failed: {}", error));
    }
    std::string result(text, length);
    shim_.release(text);
    return result;
  }

  std::optional<TokenId> special_id(std::string_view text) const override {
    int id = shim_.piece_to_id(processor_, text.data(), text.size());
    if (id < 0 || !shim_.is_control(processor_, id)) return std::nullopt;
    return id;
  }
  TokenId bos_id() const override { return shim_.bos_id(processor_); }
  TokenId eos_id() const override { return shim_.eos_id(processor_); }

 private:
  const Shim& shim_;
  mr_sp_processor* processor_ = nullptr;
};

}  // namespace

std::string sentencepiece_shim_path() {
  if (const char* from_environment = std::getenv("METAREUSE_SENTENCEPIECE_SHIM")) return from_environment;
  constexpr const char* kName = "libmetareuse_sentencepiece_shim.so";
  std::error_code error;
  auto executable = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    auto beside = executable.parent_path().parent_path() / "lib" / kName;
    if (std::filesystem::exists(beside)) return beside.string();
  }
  return METAREUSE_SENTENCEPIECE_SHIM_BUILD_PATH;
}

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
  char error[kErrorSize] = {0};
  if (shim().train(args.c_str(), error, sizeof(error)) != 0) {
    throw Error(fmt::format("sentencepiece training on {} failed: {}", options.input_file, error));
  }
}

namespace tokenizer_detail {

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, std::string file_hash) {
  return std::make_unique<SentencePieceTokenizer>(path, std::move(file_hash));
}

}  // namespace tokenizer_detail
}  // namespace metareuse
