# Finds every dependency the standard way. A failure names the Debian package
# to install (launch/setup.sh installs all of them).

macro(metareuse_find_package name debian_package)
  find_package(${name} ${ARGN} QUIET)
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR
      "metareuse: could not find ${name}. On Debian/Ubuntu install it with:\n"
      "  apt-get install ${debian_package}\n"
      "or run launch/setup.sh, which installs everything metareuse needs.")
  endif()
endmacro()

find_package(Threads REQUIRED)
metareuse_find_package(nlohmann_json nlohmann-json3-dev)
metareuse_find_package(fmt libfmt-dev)
metareuse_find_package(spdlog libspdlog-dev)
metareuse_find_package(CLI11 libcli11-dev)
metareuse_find_package(MPI "libopenmpi-dev openmpi-bin" COMPONENTS C)
metareuse_find_package(HDF5 libhdf5-dev COMPONENTS C)

# libtorch. On a CUDA machine pass -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)').
metareuse_find_package(Torch libtorch-dev)
# Torch's config exports flags (ABI, defines) through TORCH_CXX_FLAGS; they are
# applied only to targets that link torch, via this interface target.
add_library(metareuse_torch INTERFACE)
target_link_libraries(metareuse_torch INTERFACE ${TORCH_LIBRARIES})
separate_arguments(_metareuse_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(metareuse_torch INTERFACE ${_metareuse_torch_flags})

find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
if(NOT SENTENCEPIECE_FOUND)
  message(FATAL_ERROR "metareuse: could not find sentencepiece (pkg-config). Install it with:\n"
                      "  apt-get install libsentencepiece-dev sentencepiece")
endif()
pkg_check_modules(XXHASH IMPORTED_TARGET libxxhash)
if(NOT XXHASH_FOUND)
  message(FATAL_ERROR "metareuse: could not find xxHash (pkg-config libxxhash). Install it with:\n"
                      "  apt-get install libxxhash-dev")
endif()

if(METAREUSE_WITH_NCCL)
  # NCCL from the system, from the CUDA toolkit, or from the pip nvidia.nccl
  # folder (pass -DNCCL_ROOT=<that folder>).
  find_package(CUDAToolkit REQUIRED)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT} ENV NCCL_ROOT ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${NCCL_ROOT} ENV NCCL_ROOT
               ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "metareuse: METAREUSE_WITH_NCCL=ON but nccl.h/libnccl were not found. "
                        "Install libnccl-dev, or pass -DNCCL_ROOT=<folder with include/nccl.h and lib/libnccl.so.2>.")
  endif()
  add_library(metareuse_nccl INTERFACE)
  target_include_directories(metareuse_nccl INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(metareuse_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
  target_compile_definitions(metareuse_nccl INTERFACE METAREUSE_WITH_NCCL=1)
endif()

if(METAREUSE_BUILD_TESTS)
  metareuse_find_package(Catch2 catch2)
  include(Catch)
endif()
