#pragma once
// Where the real-model tests find SmolLM2-135M-Instruct: the folder
// launch/smollm2.py writes, <build>/models/SmolLM2-135M-Instruct. Defined in the
// generated test_paths.cpp (tests/CMakeLists.txt), like the other test paths.
namespace metareuse::test::paths {
const char* smollm2_dir();
}  // namespace metareuse::test::paths
