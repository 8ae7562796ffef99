# One CUDA major per build. A process that loads a cu126 libtorch beside a CUDA
# 13 runtime (the toolkit's cudart that the NCCL backend links) or a cu13 NCCL
# has two CUDA runtimes, and the cu13 NCCL has no sm_60 (P100) kernels: such a
# build fails on the GPU, far from its cause. Configure stops instead, naming
# both versions. Each version can be forced (METAREUSE_TORCH_CUDA_VERSION,
# METAREUSE_NCCL_CUDA_MAJOR) where it cannot be read; tests/cuda_majors_check.cmake
# drives these functions with fake installs.

# The CUDA version (e.g. "12.6") a libtorch was built with, read from its
# install: the pip wheel's torch/version.py (`cuda: ... = '12.6'`), else the
# libtorch zip's build-version ("2.11.0+cu126"). "" when neither says.
function(metareuse_torch_cuda_version prefix out)
  set(version "")
  if(EXISTS "${prefix}/version.py")
    file(STRINGS "${prefix}/version.py" lines REGEX "^cuda")
    if(lines MATCHES "'([0-9]+\\.[0-9]+)")
      set(version "${CMAKE_MATCH_1}")
    endif()
  endif()
  if(NOT version AND EXISTS "${prefix}/build-version")
    file(STRINGS "${prefix}/build-version" lines)
    if(lines MATCHES "\\+cu([0-9]+)([0-9])")
      set(version "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    endif()
  endif()
  set(${out} "${version}" PARENT_SCOPE)
endfunction()

# The CUDA major an NCCL was built for, from where it was found: the pip wheel's
# dist-info beside its nvidia/nccl folder (nvidia_nccl_cu12-2.21.5.dist-info), or
# a CUDA toolkit's folder (/usr/local/cuda-13.0/...). `source` says which. ""
# when the path does not say (a system libnccl2: its package version,
# 2.x-1+cuda12.x, names it; pass -DMETAREUSE_NCCL_CUDA_MAJOR).
function(metareuse_nccl_cuda_major include_dir out source_out)
  set(major "")
  set(source "")
  get_filename_component(real "${include_dir}" REALPATH)
  # <site-packages>/nvidia/nccl/include -> <site-packages>
  get_filename_component(site "${real}/../../.." ABSOLUTE)
  file(GLOB wheels "${site}/nvidia_nccl_cu*.dist-info")
  if(wheels)
    list(GET wheels 0 wheel)
    get_filename_component(wheel_name "${wheel}" NAME)
    if(wheel_name MATCHES "^nvidia_nccl_cu([0-9]+)-")
      set(major "${CMAKE_MATCH_1}")
      set(source "the pip wheel ${wheel_name}")
    endif()
  endif()
  if(NOT major AND real MATCHES "/cuda-([0-9]+)\\.[0-9]+/")
    set(major "${CMAKE_MATCH_1}")
    set(source "the CUDA toolkit folder ${real}")
  endif()
  set(${out} "${major}" PARENT_SCOPE)
  set(${source_out} "${source}" PARENT_SCOPE)
endfunction()

# The first disagreement between the CUDA majors, as a message naming both
# versions; "" when they agree. `toolkit` and `torch` are versions ("12.6"),
# `nccl_major` a major ("12"); an empty one is not checked.
function(metareuse_cuda_majors_problem toolkit torch nccl_major nccl_source out)
  string(REGEX MATCH "^[0-9]+" toolkit_major "${toolkit}")
  string(REGEX MATCH "^[0-9]+" torch_major "${torch}")
  set(recipe "A P100 (sm_60) build needs all three at CUDA 12 (a cu126 libtorch, a CUDA 12 toolkit with nvcc, \
and the nvidia-nccl-cu12 wheel); an sm_75+ build may use CUDA 13 throughout (docs/gpu.md, the P100 recipe)")
  set(problem "")
  if(toolkit_major AND torch_major AND NOT toolkit_major STREQUAL torch_major)
    set(problem "the CUDA toolkit is CUDA ${toolkit} but libtorch was built with CUDA ${torch}: one process \
would load two CUDA runtimes. Point CUDAToolkit_ROOT (and CMAKE_CUDA_COMPILER) at a CUDA ${torch_major} toolkit, \
or use a libtorch built for CUDA ${toolkit_major}. ${recipe}.")
  elseif(nccl_major AND torch_major AND NOT nccl_major STREQUAL torch_major)
    set(problem "NCCL is built for CUDA ${nccl_major} (${nccl_source}) but libtorch was built with CUDA ${torch}. \
Pass -DNCCL_ROOT=<the nvidia-nccl-cu${torch_major} wheel's nvidia/nccl folder>. ${recipe}.")
  elseif(nccl_major AND toolkit_major AND NOT nccl_major STREQUAL toolkit_major)
    set(problem "NCCL is built for CUDA ${nccl_major} (${nccl_source}) but the CUDA toolkit is CUDA ${toolkit}. \
Pass -DNCCL_ROOT=<the nvidia-nccl-cu${toolkit_major} wheel's nvidia/nccl folder>. ${recipe}.")
  endif()
  set(${out} "${problem}" PARENT_SCOPE)
endfunction()

# Stops configure when the majors differ (metareuse_cuda_majors_problem).
function(metareuse_check_cuda_majors toolkit torch nccl_major nccl_source)
  metareuse_cuda_majors_problem("${toolkit}" "${torch}" "${nccl_major}" "${nccl_source}" problem)
  if(problem)
    message(FATAL_ERROR "metareuse: ${problem}")
  endif()
endfunction()
