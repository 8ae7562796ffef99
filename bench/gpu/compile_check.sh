#!/usr/bin/env bash
# Compile-and-link check of the NCCL communicator backend on a machine with the
# CUDA toolkit (nccl.h, libnccl, libcudart) and no GPU. The backend needs only
# NCCL and the CUDA runtime, so no CUDA libtorch is involved. Runs the probe,
# which on a machine without a GPU checks that the first CUDA call fails
# through the check macro with a clear message.
#
#   bench/gpu/compile_check.sh [--torch]
#     --torch  also syntax-checks the CUDA branches of src/dist/tensor_comm.cpp
#              and bench/gpu/bench_train_gpu.cpp (METAREUSE_WITH_NCCL=1) against
#              the installed libtorch headers (a CPU libtorch ships the c10/cuda
#              headers too); about a minute per file on a loaded 2-core machine.
# Environment: CUDA_HOME (default /usr/local/cuda), NCCL_ROOT (default: in CUDA_HOME),
# CXX (default g++), OUT_DIR (default a temp folder).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cuda="${CUDA_HOME:-/usr/local/cuda}"
nccl="${NCCL_ROOT:-$cuda}"
cxx="${CXX:-g++}"
if command -v ccache >/dev/null; then cxx="ccache $cxx"; fi
out="${OUT_DIR:-$(mktemp -d -t metareuse-nccl-check.XXXXXX)}"
mkdir -p "$out"

if [[ ! -f "$nccl/include/nccl.h" || ! -f "$cuda/include/cuda_runtime.h" ]]; then
  echo "compile_check: no nccl.h/cuda_runtime.h under $nccl and $cuda; set CUDA_HOME/NCCL_ROOT" >&2
  exit 1
fi
nccl_lib="$nccl/lib"; [[ -d "$nccl/lib64" && ! -e "$nccl_lib/libnccl.so" ]] && nccl_lib="$nccl/lib64"
cuda_lib="$cuda/lib64"; [[ -d "$cuda_lib" ]] || cuda_lib="$cuda/lib"

mpi_flags="$(pkg-config --cflags ompi-c 2>/dev/null || pkg-config --cflags mpi 2>/dev/null || true)"
mpi_libs="$(pkg-config --libs ompi-c 2>/dev/null || pkg-config --libs mpi 2>/dev/null || echo -lmpi)"
flags=(-std=c++17 -O1 -Wall -Wextra -Wno-unused-parameter -Werror -DMETAREUSE_WITH_NCCL=1
       -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1
       -I"$root/include" -I"$root/src" -I"$nccl/include" -I"$cuda/include" $mpi_flags)

start=$(date +%s)
objects=()
for source in src/dist/nccl_communicator.cpp src/dist/device_communicator.cpp src/dist/communicator.cpp \
              bench/gpu/nccl_probe.cpp; do
  object="$out/$(basename "${source%.cpp}").o"
  echo "compile_check: $source"
  $cxx "${flags[@]}" -c "$root/$source" -o "$object"
  objects+=("$object")
done
echo "compile_check: link against $nccl_lib/libnccl and $cuda_lib/libcudart"
$cxx -o "$out/nccl_probe" "${objects[@]}" -L"$nccl_lib" -L"$cuda_lib" -Wl,-rpath,"$nccl_lib" \
     -Wl,-rpath,"$cuda_lib" -lnccl -lcudart -lfmt $mpi_libs -pthread
echo "compile_check: run the probe"
"$out/nccl_probe"

if [[ "${1:-}" == "--torch" ]]; then
  torch_include=""
  for candidate in /usr/include /usr/local/include \
                   "$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null)/include"; do
    if [[ -f "$candidate/c10/cuda/CUDAStream.h" ]]; then torch_include="$candidate"; break; fi
  done
  if [[ -z "$torch_include" ]]; then
    echo "compile_check: --torch: no libtorch headers with c10/cuda/CUDAStream.h found" >&2
    exit 1
  fi
  shim=()
  if [[ ! -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ]]; then
    # A CPU libtorch ships the c10/cuda headers but not this generated one; it
    # only sets the shared-library export macro.
    mkdir -p "$out/shim/c10/cuda/impl"
    echo "#pragma once" > "$out/shim/c10/cuda/impl/cuda_cmake_macros.h"
    echo "#define C10_CUDA_BUILD_SHARED_LIBS" >> "$out/shim/c10/cuda/impl/cuda_cmake_macros.h"
    shim=(-I"$out/shim")
  fi
  for source in src/dist/tensor_comm.cpp bench/gpu/bench_train_gpu.cpp; do
    echo "compile_check: syntax of $source with METAREUSE_WITH_NCCL, torch headers in $torch_include"
    ${CXX:-g++} "${flags[@]}" -fsyntax-only "${shim[@]}" -I"$torch_include" -I"$torch_include/torch/csrc/api/include" \
        "$root/$source"
  done
fi
echo "compile_check: OK in $(( $(date +%s) - start )) s"
