#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test.
#   launch/test.sh                 all tests
#   launch/test.sh -L unit         only one label (ctest arguments pass through)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${METAREUSE_BUILD_DIR:-$repo_root/build}"
"$repo_root/launch/setup.sh"
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" "$@"
