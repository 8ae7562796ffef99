#pragma once
// The paths tests use (../shared, the checkout, the built binary, the Python
// interpreter, the Llama 3 tokenizer folder). They are defined in one generated
// source file (tests/CMakeLists.txt), not as compile definitions, so that the
// test sources compile to the same object in every checkout and ccache can
// reuse them across clones and worktrees.
namespace metareuse::test::paths {
const char* shared_dir();
const char* source_dir();
const char* binary();
const char* python();
const char* llama3_tokenizer_dir();
}  // namespace metareuse::test::paths

#define METAREUSE_SHARED_DIR (::metareuse::test::paths::shared_dir())
#define METAREUSE_SOURCE_DIR (::metareuse::test::paths::source_dir())
#define METAREUSE_BINARY (::metareuse::test::paths::binary())
#define METAREUSE_PYTHON (::metareuse::test::paths::python())
#define METAREUSE_LLAMA3_TOKENIZER_DIR (::metareuse::test::paths::llama3_tokenizer_dir())
