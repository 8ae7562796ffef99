// The C interface of libmetareuse_sentencepiece_shim.so. Only C types cross
// it, so the shim's C++ runtime and protobuf copy stay private to it.
// Every function that can fail returns 0 on success and otherwise writes a
// NUL-terminated message into `error` (at most error_size bytes).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mr_sp_processor mr_sp_processor;

// Bumped when a signature changes; the loader refuses a shim of another version.
#define MR_SP_SHIM_ABI_VERSION 1
int mr_sp_abi_version(void);

mr_sp_processor* mr_sp_load(const char* path, char* error, size_t error_size);
void mr_sp_free(mr_sp_processor* processor);

int mr_sp_vocab_size(const mr_sp_processor* processor);
int mr_sp_bos_id(const mr_sp_processor* processor);
int mr_sp_eos_id(const mr_sp_processor* processor);
// -1 when the piece is not in the vocabulary or is <unk>.
int mr_sp_piece_to_id(const mr_sp_processor* processor, const char* piece, size_t length);
// 1 when the id is a control symbol (<s>, </s>) or unknown.
int mr_sp_is_control(const mr_sp_processor* processor, int id);

// *ids is malloc'ed by the shim; release it with mr_sp_release.
int mr_sp_encode(const mr_sp_processor* processor, const char* text, size_t length, int32_t** ids, size_t* count,
                 char* error, size_t error_size);
// *text is malloc'ed by the shim (not NUL-terminated); release it with mr_sp_release.
int mr_sp_decode(const mr_sp_processor* processor, const int32_t* ids, size_t count, char** text, size_t* length,
                 char* error, size_t error_size);
void mr_sp_release(void* buffer);

// args: sentencepiece trainer flags, "--input=... --model_prefix=... --vocab_size=...".
int mr_sp_train(const char* args, char* error, size_t error_size);

#ifdef __cplusplus
}
#endif
