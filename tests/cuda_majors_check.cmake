# The configure-time CUDA major check (cmake/MetareuseCudaCheck.cmake) on fake
# installs, run by ctest as `cmake -DCASE=<name> -P` (tests/CMakeLists.txt
# says which cases must fail and what their message must name).
include("${CMAKE_CURRENT_LIST_DIR}/../cmake/MetareuseCudaCheck.cmake")
set(root "${WORK_DIR}/cuda-majors-${CASE}")
file(REMOVE_RECURSE "${root}")

# A pip torch (version.py), a libtorch zip (build-version), and NCCL as a cu12
# wheel or inside a CUDA 13 toolkit folder.
file(WRITE "${root}/pip/torch/version.py" "__version__ = '2.11.0+cu126'\ncuda: Optional[str] = '12.6'\n")
file(WRITE "${root}/zip/libtorch/build-version" "2.11.0+cu130\n")
file(MAKE_DIRECTORY "${root}/site/nvidia/nccl/include" "${root}/site/nvidia_nccl_cu12-2.21.5.dist-info")
file(MAKE_DIRECTORY "${root}/usr/local/cuda-13.0/include")

metareuse_torch_cuda_version("${root}/pip/torch" pip_cuda)
metareuse_torch_cuda_version("${root}/zip/libtorch" zip_cuda)
metareuse_nccl_cuda_major("${root}/site/nvidia/nccl/include" wheel_major wheel_source)
metareuse_nccl_cuda_major("${root}/usr/local/cuda-13.0/include" toolkit_major toolkit_source)
if(NOT pip_cuda STREQUAL "12.6" OR NOT zip_cuda STREQUAL "13.0" OR NOT wheel_major STREQUAL "12" OR
   NOT toolkit_major STREQUAL "13")
  message(FATAL_ERROR "reading failed: pip '${pip_cuda}', zip '${zip_cuda}', wheel '${wheel_major}' "
                      "(${wheel_source}), toolkit '${toolkit_major}' (${toolkit_source})")
endif()

# Prints the check's verdict on one line (a FATAL_ERROR would be wrapped).
function(verdict name toolkit torch nccl_major nccl_source)
  metareuse_cuda_majors_problem("${toolkit}" "${torch}" "${nccl_major}" "${nccl_source}" problem)
  if(problem)
    message(STATUS "${name}: refused: ${problem}")
  else()
    message(STATUS "${name}: accepted")
  endif()
endfunction()

if(CASE STREQUAL "read")
  message(STATUS "read: pip ${pip_cuda}, zip ${zip_cuda}, NCCL ${wheel_major} from ${wheel_source}, "
                 "NCCL ${toolkit_major} from ${toolkit_source}")
elseif(CASE STREQUAL "p100_recipe")
  # A cu126 libtorch, a CUDA 12 toolkit, the cu12 NCCL wheel.
  verdict(p100_recipe "12.6.85" "${pip_cuda}" "${wheel_major}" "${wheel_source}")
elseif(CASE STREQUAL "toolkit_vs_torch")
  # The default CUDA 13 toolkit beside a cu126 libtorch.
  verdict(toolkit_vs_torch "13.0.88" "${pip_cuda}" "" "")
elseif(CASE STREQUAL "nccl_vs_torch")
  # Everything CUDA 12 but the NCCL inside the CUDA 13 toolkit.
  verdict(nccl_vs_torch "12.6.85" "${pip_cuda}" "${toolkit_major}" "${toolkit_source}")
elseif(CASE STREQUAL "nccl_vs_toolkit")
  # Torch's version unknown: NCCL still checked against the toolkit.
  verdict(nccl_vs_toolkit "13.0.88" "" "${wheel_major}" "${wheel_source}")
elseif(CASE STREQUAL "stops")
  # The configure-time entry point ends configure on a mismatch.
  metareuse_check_cuda_majors("13.0.88" "${pip_cuda}" "" "")
  message(STATUS "stops: configure went on")
else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
file(REMOVE_RECURSE "${root}")
