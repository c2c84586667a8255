# multiproc.pc for pkg-config users (`pkg-config --cflags --libs multiproc`), installed to
# <libdir>/pkgconfig. Included from the top-level CMakeLists.txt when MULTIPROC_INSTALL is ON.
#
# The prefix is written relative to the .pc file's own place (${pcfiledir}), so that the file is
# right wherever the tree is installed: `cmake --install build --prefix <p>` picks the prefix after
# configure time, when this file is generated. Absolute CMAKE_INSTALL_LIBDIR/INCLUDEDIR are written
# as they are.
#
# Boost ships no .pc file, so there is no `Requires:`; its include directory goes into Cflags
# unless the compiler searches it anyway. -pthread is in Cflags and Libs (Threads::Threads).
# C++17 is the compiler's default from g++ 11 and clang 16 on; older ones need -std=c++17.

set(MULTIPROC_PC_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${MULTIPROC_PC_INSTALL_DIR}")
  set(MULTIPROC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  # From <prefix>/<libdir>/pkgconfig back up to <prefix>: one ".." per path component.
  set(MULTIPROC_PC_PREFIX "\${pcfiledir}")
  string(REPLACE "/" ";" MULTIPROC_PC_COMPONENTS "${MULTIPROC_PC_INSTALL_DIR}")
  foreach(component IN LISTS MULTIPROC_PC_COMPONENTS)
    if(NOT component STREQUAL "" AND NOT component STREQUAL ".")
      string(APPEND MULTIPROC_PC_PREFIX "/..")
    endif()
  endforeach()
endif()
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(MULTIPROC_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(MULTIPROC_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()

set(MULTIPROC_PC_EXTRA_CFLAGS "")
foreach(dir IN LISTS Boost_INCLUDE_DIRS)
  if(NOT dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    string(APPEND MULTIPROC_PC_EXTRA_CFLAGS " -I${dir}")
  endif()
endforeach()

configure_file(${CMAKE_CURRENT_LIST_DIR}/multiproc.pc.in ${CMAKE_CURRENT_BINARY_DIR}/multiproc.pc
  @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/multiproc.pc DESTINATION ${MULTIPROC_PC_INSTALL_DIR})

# multiproc-redis.pc, when multiproc::redis is built: it requires multiproc and hiredis (in
# Requires, not Requires.private: the library is static by default, so its users link hiredis).
if(MULTIPROC_HAVE_REDIS)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/multiproc-redis.pc.in
    ${CMAKE_CURRENT_BINARY_DIR}/multiproc-redis.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/multiproc-redis.pc DESTINATION ${MULTIPROC_PC_INSTALL_DIR})
endif()
