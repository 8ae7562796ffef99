#!/usr/bin/env bash
# Installs what metareuse needs from Debian's packages (only what is missing),
# then configures and builds into build/. Idempotent: a second run with nothing
# missing does no apt work and an incremental build.
#
#   launch/setup.sh            install + build
#   launch/setup.sh --no-build install only
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${METAREUSE_BUILD_DIR:-$repo_root/build}"

packages=(
  build-essential cmake pkg-config ccache
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  nlohmann-json3-dev
  libsentencepiece-dev sentencepiece
  catch2
  libcli11-dev libfmt-dev libspdlog-dev
  libxxhash-dev
  libpcre2-dev
  libsimdjson-dev
  slurm-wlm munge   # tests/test_slurm.sh runs the sbatch templates on a private local cluster
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing missing packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

if [[ "${1:-}" == "--no-build" ]]; then exit 0; fi

jobs="$(nproc)"
cmake_args=(-S "$repo_root" -B "$build_dir" -DCMAKE_BUILD_TYPE="${METAREUSE_BUILD_TYPE:-Release}")
if command -v ccache >/dev/null 2>&1; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  # Paths relative to the checkout, so clones in other folders share the cache.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$repo_root}"
fi
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake "${cmake_args[@]}"
fi
cmake --build "$build_dir" -j "$jobs"
