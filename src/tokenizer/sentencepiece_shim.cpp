// libmetareuse_sentencepiece_shim.so: the only metareuse code that links
// libsentencepiece. See include/metareuse/tokenizer/sentencepiece.h for why.
#include "sentencepiece_shim.h"

#include <sentencepiece_processor.h>  // SentencePieceProcessor
#include <sentencepiece_trainer.h>    // SentencePieceTrainer

#include <dlfcn.h>  // dlopen(nullptr), dlsym

#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

struct mr_sp_processor {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

void write_error(char* error, size_t error_size, const std::string& message) {
  if (error == nullptr || error_size == 0) return;
  size_t n = message.size() < error_size - 1 ? message.size() : error_size - 1;
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

// Opened with RTLD_DEEPBIND, the shim and libsentencepiece bind std::cout,
// std::cerr and std::clog to libstdc++'s own objects. But an executable that
// uses them (metareuse does) holds copy-relocated copies, and libstdc++
// initialises only those copies, so the originals are raw memory and
// sentencepiece's first log line to std::cerr segfaults (seen in `metareuse
// tokenize --train`). Each original is therefore constructed here as a stream
// over the executable's buffer, so both write to the same place.
// (dlsym(RTLD_DEFAULT) would search this library's deep-bound scope first;
// the main program's handle searches the executable first.)
void adopt_stream(void* program, std::ostream& local, const char* symbol) {
  auto* global = static_cast<std::ostream*>(dlsym(program, symbol));
  if (global == nullptr || global == &local) return;  // no copy: the object is already initialised
  new (&local) std::ostream(global->rdbuf());
}

__attribute__((constructor)) void adopt_standard_streams() {
  void* program = dlopen(nullptr, RTLD_NOW);
  if (program == nullptr) return;
  adopt_stream(program, std::cout, "_ZSt4cout");
  adopt_stream(program, std::cerr, "_ZSt4cerr");
  adopt_stream(program, std::clog, "_ZSt4clog");
  dlclose(program);
}

}  // namespace

extern "C" {

int mr_sp_abi_version(void) { return MR_SP_SHIM_ABI_VERSION; }

mr_sp_processor* mr_sp_load(const char* path, char* error, size_t error_size) {
  try {
    auto* processor = new mr_sp_processor();
    auto status = processor->processor.Load(path);
    if (!status.ok()) {
      write_error(error, error_size, status.ToString());
      delete processor;
      return nullptr;
    }
    return processor;
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

void mr_sp_free(mr_sp_processor* processor) { delete processor; }

int mr_sp_vocab_size(const mr_sp_processor* processor) { return processor->processor.GetPieceSize(); }
int mr_sp_bos_id(const mr_sp_processor* processor) { return processor->processor.bos_id(); }
int mr_sp_eos_id(const mr_sp_processor* processor) { return processor->processor.eos_id(); }

int mr_sp_piece_to_id(const mr_sp_processor* processor, const char* piece, size_t length) {
  int id = processor->processor.PieceToId(std::string(piece, length));
  return processor->processor.IsUnknown(id) ? -1 : id;
}

int mr_sp_is_control(const mr_sp_processor* processor, int id) {
  return processor->processor.IsControl(id) || processor->processor.IsUnknown(id) ? 1 : 0;
}

int mr_sp_encode(const mr_sp_processor* processor, const char* text, size_t length, int32_t** ids, size_t* count,
                 char* error, size_t error_size) {
  try {
    std::vector<int> result;
    auto status = processor->processor.Encode(std::string(text, length), &result);
    if (!status.ok()) {
      write_error(error, error_size, status.ToString());
      return 1;
    }
    *count = result.size();
    *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (result.empty() ? 1 : result.size())));
    for (size_t i = 0; i < result.size(); ++i) (*ids)[i] = result[i];
    return 0;
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return 1;
  }
}

int mr_sp_decode(const mr_sp_processor* processor, const int32_t* ids, size_t count, char** text, size_t* length,
                 char* error, size_t error_size) {
  try {
    std::vector<int> input(ids, ids + count);
    std::string result;
    auto status = processor->processor.Decode(input, &result);
    if (!status.ok()) {
      write_error(error, error_size, status.ToString());
      return 1;
    }
    *length = result.size();
    *text = static_cast<char*>(std::malloc(result.empty() ? 1 : result.size()));
    std::memcpy(*text, result.data(), result.size());
    return 0;
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return 1;
  }
}

void mr_sp_release(void* buffer) { std::free(buffer); }

int mr_sp_train(const char* args, char* error, size_t error_size) {
  try {
    auto status = sentencepiece::SentencePieceTrainer::Train(args);
    if (!status.ok()) {
      write_error(error, error_size, status.ToString());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return 1;
  }
}

}  // extern "C"
