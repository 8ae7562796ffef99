# Finds every dependency the standard way. A failure names the Debian package
# to install (launch/setup.sh installs all of them).

# Fallback copies of the dependencies (bench/gpu/pack.sh packs them for the GPU
# machine, which has no network): searched after the system's own, so a
# library the system has is always taken from the system.
set(METAREUSE_DEPS_FALLBACK "" CACHE PATH
    "A .../usr folder of fallback copies of the dependencies, searched after the system's (bench/gpu/pack.sh)")
if(METAREUSE_DEPS_FALLBACK)
  list(APPEND CMAKE_SYSTEM_PREFIX_PATH "${METAREUSE_DEPS_FALLBACK}")
  # pkg-config: the default search path first, then the fallback's folders.
  execute_process(COMMAND pkg-config --variable pc_path pkg-config OUTPUT_VARIABLE _pc_default
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  file(GLOB _pc_fallback LIST_DIRECTORIES true "${METAREUSE_DEPS_FALLBACK}/lib/*/pkgconfig"
       "${METAREUSE_DEPS_FALLBACK}/lib/pkgconfig" "${METAREUSE_DEPS_FALLBACK}/share/pkgconfig")
  string(REPLACE ";" ":" _pc_fallback "${_pc_fallback}")
  set(ENV{PKG_CONFIG_LIBDIR} "${_pc_default}:${_pc_fallback}")
  message(STATUS "metareuse: fallback dependencies in ${METAREUSE_DEPS_FALLBACK}")
endif()

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

# libtorch: the one inside the PyPI torch wheel (launch/requirements.txt), found
# through CMAKE_PREFIX_PATH=$(python -c 'import torch;print(torch.utils.cmake_prefix_path)');
# launch/setup.sh passes it. Another libtorch >= 2.4 works through Torch_DIR.
# A CUDA libtorch's config needs the CUDA toolkit (nvcc) to configure, not a GPU.
set(METAREUSE_CUDA_ARCHITECTURES "" CACHE STRING
    "CUDA architectures for metareuse's own CUDA code, as TORCH_CUDA_ARCH_LIST (e.g. \"6.0\" for P100, \"9.0\" for H100); empty: libtorch's default")
if(METAREUSE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "${METAREUSE_CUDA_ARCHITECTURES}")
elseif(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  # Without a GPU torch's config guesses a list (with a warning); metareuse has no
  # .cu sources yet, so the list only matters once it has.
  set(ENV{TORCH_CUDA_ARCH_LIST} "7.5;8.0;9.0")
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  message(FATAL_ERROR
    "metareuse: could not find libtorch. Run launch/setup.sh (it installs the pinned PyPI torch into .venv/ and "
    "passes its CMake folder), or pass -DCMAKE_PREFIX_PATH=$(python -c 'import torch;print(torch.utils.cmake_prefix_path)') "
    "or -DTorch_DIR=<libtorch>/share/cmake/Torch.")
endif()
if(Torch_VERSION VERSION_LESS 2.4)
  message(FATAL_ERROR "metareuse: libtorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX} is older than 2.4; "
                      "launch/setup.sh installs torch 2.11.0 (launch/requirements.txt)")
endif()

# Since 2.10 libtorch's include/ carries its own fmt (12.x). metareuse builds every
# target against Debian's fmt 9 (spdlog is compiled against it), so torch targets
# see torch's headers through a folder of links to every include/ entry but fmt.
# The torch headers metareuse includes do not use fmt.
get_filename_component(_torch_include "${TORCH_INSTALL_PREFIX}/include" REALPATH)
set(_torch_overlay "${CMAKE_BINARY_DIR}/torch-include")
file(REMOVE_RECURSE "${_torch_overlay}")
file(MAKE_DIRECTORY "${_torch_overlay}")
file(GLOB _torch_entries RELATIVE "${_torch_include}" "${_torch_include}/*")
foreach(entry IN LISTS _torch_entries)
  if(NOT entry STREQUAL "fmt")
    file(CREATE_LINK "${_torch_include}/${entry}" "${_torch_overlay}/${entry}" SYMBOLIC)
  endif()
endforeach()
foreach(target torch torch_cpu torch_cuda c10 c10_cuda)
  if(TARGET ${target})
    get_target_property(_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    set(_new_dirs "")
    foreach(dir IN LISTS _dirs)
      get_filename_component(_real "${dir}" REALPATH)
      string(FIND "${_real}" "${_torch_include}" _at)
      if(_at EQUAL 0)
        string(REPLACE "${_torch_include}" "${_torch_overlay}" _real "${_real}")
        list(APPEND _new_dirs "${_real}")
      else()
        list(APPEND _new_dirs "${dir}")
      endif()
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new_dirs}")
  endif()
endforeach()

# Torch's config exports flags (ABI, defines) through TORCH_CXX_FLAGS; they are
# applied only to targets that link torch, via this interface target.
add_library(metareuse_torch INTERFACE)
target_link_libraries(metareuse_torch INTERFACE ${TORCH_LIBRARIES})
separate_arguments(_metareuse_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(metareuse_torch INTERFACE ${_metareuse_torch_flags})
# The PyPI libtorch.so is built with a newer GCC's toolset, which links parts of
# its libstdc++ statically and exports them (std::filesystem among 182 std::
# symbols). Listed before libstdc++.so.6, it wins symbol lookup for the whole
# process, and its std::filesystem::remove_all crashed (a null call) in our
# tests. libstdc++ first in every torch binary's DT_NEEDED list keeps the
# system's copy in charge.
target_link_options(metareuse_torch INTERFACE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
# A CUDA libtorch (the PyPI wheel is one): torch code may use c10/cuda and ATen/cuda.
if(TORCH_CUDA_LIBRARIES)
  set(METAREUSE_TORCH_HAS_CUDA ON)
  target_compile_definitions(metareuse_torch INTERFACE METAREUSE_WITH_CUDA=1)
else()
  set(METAREUSE_TORCH_HAS_CUDA OFF)
endif()
# The CUDA architectures libtorch was built for, shown by `metareuse info` and
# checked against each GPU before training. Read from the torch Python package
# when there is one (a C++-only libtorch has no query for it); the check at run
# time also tries a kernel on each GPU, so an empty list only loses the preview.
set(METAREUSE_TORCH_ARCH_LIST "" CACHE STRING "CUDA architectures of the linked libtorch (read from METAREUSE_PYTHON's torch when empty)")
set(METAREUSE_PYTHON "" CACHE FILEPATH "The Python with the pinned packages (launch/setup.sh: .venv/bin/python)")
if(NOT METAREUSE_TORCH_ARCH_LIST AND METAREUSE_PYTHON AND METAREUSE_TORCH_HAS_CUDA)
  execute_process(COMMAND "${METAREUSE_PYTHON}" -c "import torch;print(torch._C._cuda_getArchFlags())"
                  OUTPUT_VARIABLE _arch RESULT_VARIABLE _status OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_status EQUAL 0)
    set(METAREUSE_TORCH_ARCH_LIST "${_arch}" CACHE STRING "" FORCE)
  endif()
endif()
message(STATUS "metareuse: libtorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}, CUDA ${METAREUSE_TORCH_HAS_CUDA}, "
               "kernels for: ${METAREUSE_TORCH_ARCH_LIST}")

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

# One CUDA major per build: the toolkit (cudart, nvcc), libtorch and NCCL agree
# (cmake/MetareuseCudaCheck.cmake says why).
include(MetareuseCudaCheck)
set(METAREUSE_TORCH_CUDA_VERSION "" CACHE STRING
    "The CUDA version libtorch was built with, e.g. 12.6 (read from its install when empty)")
set(METAREUSE_NCCL_CUDA_MAJOR "" CACHE STRING
    "The CUDA major NCCL was built for, e.g. 12 (read from its wheel or toolkit folder when empty)")
if(METAREUSE_TORCH_HAS_CUDA)
  set(_torch_cuda "${METAREUSE_TORCH_CUDA_VERSION}")
  if(NOT _torch_cuda)
    metareuse_torch_cuda_version("${TORCH_INSTALL_PREFIX}" _torch_cuda)
  endif()
  set(_nccl_major "")
  set(_nccl_source "")
  if(METAREUSE_WITH_NCCL)
    if(METAREUSE_NCCL_CUDA_MAJOR)
      set(_nccl_major "${METAREUSE_NCCL_CUDA_MAJOR}")
      set(_nccl_source "METAREUSE_NCCL_CUDA_MAJOR")
    else()
      metareuse_nccl_cuda_major("${NCCL_INCLUDE_DIR}" _nccl_major _nccl_source)
    endif()
  endif()
  message(STATUS "metareuse: CUDA toolkit ${CUDAToolkit_VERSION} at ${CUDAToolkit_BIN_DIR}, libtorch built with "
                 "CUDA ${_torch_cuda}, NCCL for CUDA ${_nccl_major} (${_nccl_source})")
  if(NOT _torch_cuda)
    message(WARNING "metareuse: could not read libtorch's CUDA version under ${TORCH_INSTALL_PREFIX}; pass "
                    "-DMETAREUSE_TORCH_CUDA_VERSION=<12.6|13.0|...> so configure can check the CUDA majors")
  endif()
  if(METAREUSE_WITH_NCCL AND NOT _nccl_major)
    message(WARNING "metareuse: could not tell which CUDA major ${NCCL_LIBRARY} is built for; pass "
                    "-DMETAREUSE_NCCL_CUDA_MAJOR=<12|13> so configure can check it")
  endif()
  metareuse_check_cuda_majors("${CUDAToolkit_VERSION}" "${_torch_cuda}" "${_nccl_major}" "${_nccl_source}")
endif()

if(METAREUSE_BUILD_TESTS)
  metareuse_find_package(Catch2 catch2)
  include(Catch)
endif()
