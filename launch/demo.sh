#!/usr/bin/env bash
# The demo command: installs what is missing, builds, and runs the pipeline on
# the bundled sample corpus (configs/demo.json) on this machine's CPU.
#   launch/demo.sh [extra metareuse run flags, e.g. --set run.out_dir=/tmp/demo]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${METAREUSE_BUILD_DIR:-$repo_root/build}"
"$repo_root/launch/setup.sh"
cd "$repo_root"
exec "$build_dir/bin/metareuse" run --config configs/demo.json "$@"
