# One warnings function applied to every metareuse target.
function(metareuse_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(METAREUSE_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# metareuse_add_library(<stage> SOURCES ... [DEPS ...])
# Defines metareuse_<stage> (static) with alias metareuse::<stage>.
function(metareuse_add_library stage)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(metareuse_${stage} STATIC ${ARG_SOURCES})
  add_library(metareuse::${stage} ALIAS metareuse_${stage})
  # Private headers stay private: a module sees include/ and its own folder only.
  target_include_directories(metareuse_${stage}
    PUBLIC ${PROJECT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(metareuse_${stage} PUBLIC ${ARG_DEPS})
  metareuse_set_warnings(metareuse_${stage})
endfunction()
