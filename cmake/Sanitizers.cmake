# Checked builds: sanitizers and warnings as errors, for every target of this build (the library,
# the tests, the samples, the benchmarks). docs/ci.md says how CI uses them.
#
#   -DMULTIPROC_SANITIZE=address,undefined   AddressSanitizer (with LeakSanitizer) and UBSan
#   -DMULTIPROC_SANITIZE=thread              ThreadSanitizer
#   -DMULTIPROC_WERROR=ON                    every warning is an error
#
# Every report is fatal (-fno-sanitize-recover=all): a run with a report fails, it is never a
# line in a log that passed. The run-time options (halt_on_error, detect_leaks, TSan's
# die_after_fork=0, where reports go) are set by whoever runs the tests: `./quickstart check`.
# Only included by the top-level CMakeLists.txt when multiproc is the top-level project.

set(MULTIPROC_SANITIZE "" CACHE STRING
  "Sanitizers for every target: empty, address,undefined, or thread")
option(MULTIPROC_WERROR "Treat compiler warnings as errors" OFF)

if(MULTIPROC_SANITIZE)
  string(REPLACE "," ";" multiproc_sanitizers "${MULTIPROC_SANITIZE}")
  foreach(s IN LISTS multiproc_sanitizers)
    if(NOT s MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "MULTIPROC_SANITIZE: '${s}' is not address, undefined or thread")
    endif()
  endforeach()
  if("thread" IN_LIST multiproc_sanitizers AND "address" IN_LIST multiproc_sanitizers)
    message(FATAL_ERROR "MULTIPROC_SANITIZE: thread and address cannot be combined")
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "MULTIPROC_SANITIZE needs g++ or clang")
  endif()
  set(multiproc_sanitize_flags -fsanitize=${MULTIPROC_SANITIZE} -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  add_compile_options(${multiproc_sanitize_flags})
  add_link_options(-fsanitize=${MULTIPROC_SANITIZE})
  message(STATUS "multiproc: sanitizers ${MULTIPROC_SANITIZE}")
endif()

if(MULTIPROC_WERROR)
  add_compile_options(-Werror)
endif()
