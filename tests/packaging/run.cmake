# Packaging test, run with cmake -P: builds tests/packaging/consumer against multiproc either from
# an install tree (MODE=find_package) or from the source tree (MODE=add_subdirectory), then runs it.
cmake_minimum_required(VERSION 3.16)

set(work ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
endfunction()

set(consumer_args -S ${SOURCE_DIR}/tests/packaging/consumer -B ${work}/build -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "find_package")
  run_step("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${work}/prefix)
  if(NOT EXISTS ${work}/prefix/lib/cmake/multiproc/multiprocConfig.cmake)
    message(FATAL_ERROR "the install tree has no lib/cmake/multiproc/multiprocConfig.cmake")
  endif()
  if(NOT EXISTS ${work}/prefix/lib/libmultiproc.a)
    message(FATAL_ERROR "the install tree has no lib/libmultiproc.a")
  endif()
  if(EXISTS ${work}/prefix/include/multiproc/../../src)
    message(FATAL_ERROR "src/ must not be installed")
  endif()
  run_step("configure consumer (find_package)" ${CMAKE_COMMAND} ${consumer_args}
    -DMULTIPROC_CONSUMER_MODE=find_package -DCMAKE_PREFIX_PATH=${work}/prefix)
elseif(MODE STREQUAL "add_subdirectory")
  run_step("configure consumer (add_subdirectory)" ${CMAKE_COMMAND} ${consumer_args}
    -DMULTIPROC_CONSUMER_MODE=add_subdirectory -DMULTIPROC_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be find_package or add_subdirectory")
endif()
run_step("build consumer" ${CMAKE_COMMAND} --build ${work}/build --parallel 2)
run_step("run consumer" ${work}/build/consumer)
file(REMOVE_RECURSE ${work})
