# Packaging test, run with cmake -P (registered in tests/CMakeLists.txt). Builds
# tests/packaging/consumer against multiproc, runs it, and checks it printed the right
# MULTIPROC_VERSION_STRING:
#   MODE=find_package      install BUILD_DIR; consume it with find_package and with pkg-config
#   MODE=add_subdirectory  consume the source tree with add_subdirectory
#   MODE=shared            build the library alone with BUILD_SHARED_LIBS=ON, install it; consume it
#                          with find_package and with pkg-config; both must load the installed .so
# With REDIS=1 (multiproc::redis is built), the consumer project also builds redis_consumer against
# multiproc::redis (hiredis found through the package's config), and it is run.
# pkg-config steps are skipped, with a message, when pkg-config is not installed.
cmake_minimum_required(VERSION 3.16)

set(work ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
  message(STATUS "${what}: ok")
endfunction()

# The consumer prints "multiproc <MULTIPROC_VERSION_STRING>" and checks its own exact total.
function(run_consumer what exe)
  run_step("run ${what}" ${exe})
  if(NOT step_output MATCHES "multiproc ${VERSION}\n")
    message(FATAL_ERROR "${what} did not print 'multiproc ${VERSION}':\n${step_output}")
  endif()
endfunction()

# Same compiler, launcher and build type as the lead build, and (with ccache) the same directory
# depth for every rebuild of the library, so that the rebuilds share ccache's entries.
set(common_args -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX})
if(LAUNCHER)
  list(APPEND common_args -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
  if(NOT DEFINED ENV{CCACHE_BASEDIR})
    set(ENV{CCACHE_BASEDIR} ${SOURCE_DIR})
  endif()
endif()
set(consumer_args -S ${SOURCE_DIR}/tests/packaging/consumer -B ${work}/build ${common_args}
  -DMULTIPROC_CONSUMER_REDIS=${REDIS})

function(run_redis_consumer exe)
  if(NOT REDIS)
    return()
  endif()
  run_step("run ${exe}" ${exe})
  if(NOT step_output MATCHES "multiproc::redis ok")
    message(FATAL_ERROR "${exe} did not print 'multiproc::redis ok':\n${step_output}")
  endif()
endfunction()

function(check_install prefix shared)
  set(libdir ${prefix}/${INSTALL_LIBDIR})
  foreach(file ${libdir}/cmake/multiproc/multiprocConfig.cmake ${libdir}/pkgconfig/multiproc.pc
      ${prefix}/include/multiproc/multiproc.hpp ${prefix}/include/multiproc/version.hpp)
    if(NOT EXISTS ${file})
      message(FATAL_ERROR "the install tree has no ${file}")
    endif()
  endforeach()
  if(shared)
    # libmultiproc.so -> libmultiproc.so.<SOVERSION> -> libmultiproc.so.<VERSION>
    foreach(name libmultiproc.so libmultiproc.so.${SOVERSION})
      if(NOT IS_SYMLINK ${libdir}/${name})
        message(FATAL_ERROR "the install tree has no symlink ${libdir}/${name}")
      endif()
    endforeach()
    if(NOT EXISTS ${libdir}/libmultiproc.so.${VERSION} OR IS_SYMLINK ${libdir}/libmultiproc.so.${VERSION})
      message(FATAL_ERROR "the install tree has no ${libdir}/libmultiproc.so.${VERSION}")
    endif()
  elseif(NOT EXISTS ${libdir}/libmultiproc.a)
    message(FATAL_ERROR "the install tree has no ${libdir}/libmultiproc.a")
  endif()
  if(EXISTS ${prefix}/include/multiproc/../../src OR EXISTS ${prefix}/src)
    message(FATAL_ERROR "src/ must not be installed")
  endif()
endfunction()

# A shared consumer must load the installed libmultiproc.so.<SOVERSION>, found through its RPATH.
function(check_loads_installed_library exe libdir)
  set(CMAKE_GET_RUNTIME_DEPENDENCIES_PLATFORM "linux+elf")
  file(GET_RUNTIME_DEPENDENCIES EXECUTABLES ${exe}
    RESOLVED_DEPENDENCIES_VAR resolved UNRESOLVED_DEPENDENCIES_VAR unresolved)
  file(REAL_PATH ${libdir}/libmultiproc.so.${SOVERSION} expected)
  set(found OFF)
  foreach(lib IN LISTS resolved)  # by its soname, libmultiproc.so.<SOVERSION>
    get_filename_component(name ${lib} NAME)
    file(REAL_PATH ${lib} real)
    if(name STREQUAL "libmultiproc.so.${SOVERSION}" AND real STREQUAL expected)
      set(found ON)
    endif()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "${exe} does not load ${expected}: resolved ${resolved}; unresolved ${unresolved}")
  endif()
  message(STATUS "${exe} loads libmultiproc.so.${SOVERSION} from ${libdir}")
endfunction()

# pkg-config: compile the consumer by hand with `pkg-config --cflags --libs multiproc`.
function(consume_with_pkg_config prefix shared)
  find_program(PKG_CONFIG NAMES pkg-config pkgconf)
  if(NOT PKG_CONFIG)
    message(STATUS "pkg-config is not installed: skipping the pkg-config consumer "
      "(apt-get install pkg-config)")
    return()
  endif()
  set(ENV{PKG_CONFIG_PATH} ${prefix}/${INSTALL_LIBDIR}/pkgconfig)
  run_step("pkg-config --modversion" ${PKG_CONFIG} --modversion multiproc)
  string(STRIP "${step_output}" modversion)
  if(NOT modversion STREQUAL VERSION)
    message(FATAL_ERROR "pkg-config says version '${modversion}', expected '${VERSION}'")
  endif()
  run_step("pkg-config --cflags --libs" ${PKG_CONFIG} --cflags --libs multiproc)
  separate_arguments(flags UNIX_COMMAND "${step_output}")
  run_step("pkg-config --variable=libdir" ${PKG_CONFIG} --variable=libdir multiproc)
  string(STRIP "${step_output}" libdir)
  file(REAL_PATH ${libdir} libdir)
  file(REAL_PATH ${prefix}/${INSTALL_LIBDIR} expected_libdir)
  if(NOT libdir STREQUAL expected_libdir)
    message(FATAL_ERROR "pkg-config's libdir is ${libdir}, expected ${expected_libdir}")
  endif()
  set(exe ${work}/consumer_pkg_config)
  set(rpath)
  if(shared)
    set(rpath -Wl,-rpath,${libdir})
  endif()
  run_step("build consumer (pkg-config)" ${LAUNCHER} ${CXX} -std=c++17 -O1
    ${SOURCE_DIR}/tests/packaging/consumer/main.cpp -o ${exe} ${flags} ${rpath})
  if(shared)
    check_loads_installed_library(${exe} ${libdir})
  endif()
  run_consumer("consumer (pkg-config)" ${exe})
  if(REDIS)
    run_step("pkg-config --cflags --libs multiproc-redis" ${PKG_CONFIG} --cflags --libs multiproc-redis)
    separate_arguments(flags UNIX_COMMAND "${step_output}")
    set(exe ${work}/redis_consumer_pkg_config)
    run_step("build redis consumer (pkg-config)" ${LAUNCHER} ${CXX} -std=c++17 -O1
      ${SOURCE_DIR}/tests/packaging/consumer/redis_main.cpp -o ${exe} ${flags} ${rpath})
    run_redis_consumer(${exe})
  endif()
endfunction()

if(MODE STREQUAL "find_package" OR MODE STREQUAL "shared")
  set(prefix ${work}/prefix)
  if(MODE STREQUAL "find_package")
    set(shared ${BUILT_SHARED})
    run_step("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
  else()
    set(shared ON)
    # At the same depth as add_subdirectory's build/multiproc (see common_args above).
    set(lib_build ${work}/build/multiproc)
    run_step("configure the shared library" ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${lib_build}
      ${common_args} -DBUILD_SHARED_LIBS=ON -DMULTIPROC_INSTALL=ON -DMULTIPROC_TESTS=OFF
      -DMULTIPROC_SAMPLES=OFF -DMULTIPROC_BENCH=OFF)
    set(lib_targets multiproc multiproc-ls)  # the inspector is installed with it
    if(REDIS)
      list(APPEND lib_targets multiproc_redis)
    endif()
    run_step("build the shared library" ${CMAKE_COMMAND} --build ${lib_build}
      --target ${lib_targets} --parallel 2)
    run_step("install the shared library" ${CMAKE_COMMAND} --install ${lib_build} --prefix ${prefix})
    if(NOT EXISTS ${prefix}/bin/multiproc-ls)
      message(FATAL_ERROR "the install tree has no ${prefix}/bin/multiproc-ls")
    endif()
    file(REMOVE_RECURSE ${work}/build)
  endif()
  check_install(${prefix} ${shared})
  run_step("configure consumer (find_package)" ${CMAKE_COMMAND} ${consumer_args}
    -DMULTIPROC_CONSUMER_MODE=find_package -DCMAKE_PREFIX_PATH=${prefix})
  run_step("build consumer (find_package)" ${CMAKE_COMMAND} --build ${work}/build --parallel 2)
  if(shared)
    check_loads_installed_library(${work}/build/consumer ${prefix}/${INSTALL_LIBDIR})
  endif()
  run_consumer("consumer (find_package)" ${work}/build/consumer)
  run_redis_consumer(${work}/build/redis_consumer)
  consume_with_pkg_config(${prefix} ${shared})
elseif(MODE STREQUAL "add_subdirectory")
  run_step("configure consumer (add_subdirectory)" ${CMAKE_COMMAND} ${consumer_args}
    -DMULTIPROC_CONSUMER_MODE=add_subdirectory -DMULTIPROC_SOURCE_DIR=${SOURCE_DIR})
  run_step("build consumer" ${CMAKE_COMMAND} --build ${work}/build --parallel 2)
  run_consumer("consumer (add_subdirectory)" ${work}/build/consumer)
  run_redis_consumer(${work}/build/redis_consumer)
else()
  message(FATAL_ERROR "MODE must be find_package, add_subdirectory or shared")
endif()
file(REMOVE_RECURSE ${work})
