# Checks that every Boost.Test suite in the test files is registered with ctest (see the top of
# tests/CMakeLists.txt). Run with cmake -P, in one of two modes:
#
#   -DENTRIES=file=suite,... -DDIR=<tests dir> -DSTAMP=<file>
#       reads each file: its top-level suites must all be the suite its entry names, and it may
#       have no test case outside a suite (the master suite is never run by ctest); touches STAMP.
#   -DTESTS=<multiproc_tests> -DSUITES=suite,...
#       asks the binary (--list_content) for its top-level suites: they must be exactly SUITES.
cmake_minimum_required(VERSION 3.16)

set(errors "")

if(DEFINED ENTRIES)
  string(REPLACE "," ";" entries "${ENTRIES}")
  set(macro "BOOST_(AUTO_TEST_SUITE_END|AUTO_TEST_SUITE|FIXTURE_TEST_SUITE|[A-Z_]*TEST_CASE[A-Z_]*)")
  foreach(entry IN LISTS entries)
    string(REPLACE "=" ";" pair "${entry}")
    list(GET pair 0 file)
    list(GET pair 1 suite)
    file(READ ${DIR}/${file} text)
    string(REGEX MATCHALL "${macro}[ \t\r\n]*\\([ \t\r\n]*[A-Za-z0-9_]*" uses "${text}")
    set(depth 0)
    set(seen OFF)
    foreach(use IN LISTS uses)
      string(REGEX MATCH "^${macro}" kind "${use}")
      string(REGEX REPLACE "^[^(]*\\([ \t\r\n]*" "" name "${use}")
      if(kind STREQUAL "BOOST_AUTO_TEST_SUITE_END")
        math(EXPR depth "${depth} - 1")
      elseif(kind MATCHES "_TEST_SUITE$")
        if(depth EQUAL 0)
          set(seen ON)
          if(NOT name STREQUAL suite)
            string(APPEND errors "  tests/${file}: top-level suite '${name}', but its entry in "
              "MULTIPROC_TEST_FILES registers '${suite}' (write `${file}=${name}` there, or rename "
              "the suite)\n")
          endif()
        endif()
        math(EXPR depth "${depth} + 1")
      elseif(depth EQUAL 0)
        string(APPEND errors "  tests/${file}: test case '${name}' outside any suite: ctest runs "
          "suites only, so it would never run\n")
      endif()
    endforeach()
    if(NOT seen)
      string(APPEND errors "  tests/${file}: no BOOST_AUTO_TEST_SUITE / BOOST_FIXTURE_TEST_SUITE\n")
    endif()
  endforeach()
  if(errors STREQUAL "")
    file(TOUCH ${STAMP})
  endif()
elseif(DEFINED TESTS)
  string(REPLACE "," ";" suites "${SUITES}")
  execute_process(COMMAND ${TESTS} --list_content RESULT_VARIABLE rc OUTPUT_VARIABLE out
    ERROR_VARIABLE listing)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${TESTS} --list_content failed (${rc}):\n${out}${listing}")
  endif()
  string(APPEND listing "${out}")  # Boost.Test prints the listing on stderr
  string(REGEX MATCHALL "(^|\n)[A-Za-z0-9_]+" tops "${listing}")
  set(found "")
  foreach(top IN LISTS tops)
    string(STRIP "${top}" top)
    list(APPEND found ${top})
    if(NOT top IN_LIST suites)
      string(APPEND errors "  '${top}' is in the binary but registered with no ctest test\n")
    endif()
  endforeach()
  foreach(suite IN LISTS suites)
    if(NOT suite IN_LIST found)
      string(APPEND errors "  ctest test '${suite}' names no top-level suite of the binary\n")
    endif()
  endforeach()
  if(errors STREQUAL "")
    list(LENGTH found n)
    message(STATUS "all ${n} top-level suites are registered with ctest")
  endif()
else()
  message(FATAL_ERROR "check_suites.cmake: pass ENTRIES (with DIR and STAMP) or TESTS and SUITES")
endif()

if(NOT errors STREQUAL "")
  message(FATAL_ERROR "test suites not registered with ctest (tests/CMakeLists.txt):\n${errors}")
endif()
