#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test.
#   launch/test.sh                 all tests
#   launch/test.sh -L unit         only one label (ctest arguments pass through)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${METAREUSE_BUILD_DIR:-$repo_root/build}"
# The real-model tests (SmolLM2-135M-Instruct) are part of the suite: setup makes
# their folder (launch/smollm2.py); METAREUSE_REAL_MODEL=0 leaves it out.
METAREUSE_REAL_MODEL="${METAREUSE_REAL_MODEL:-1}" "$repo_root/launch/setup.sh"
cd "$build_dir"
# One torch (OpenMP) thread per test process: ctest already runs nproc tests at
# once, and more OpenMP threads than cores wait on each other. On the 2-core
# machine loaded with builds, a pipeline test took over 300 s (30 s when idle).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ctest --output-on-failure -j "$(nproc)" "$@"
