# Packaging (issue 13), included at the end of CMakeLists.txt:
# - libwoodpecker.so (soname libwoodpecker.so.0) beside libwoodpecker.a,
#   exporting only the API of include/woodpecker.h and include/woodpecker_stream.h
#   (src/libwoodpecker.map);
# - the man pages wp(1), woodpecker(8) and woodpecker.yaml(5), generated at
#   build time from `wp --help`, `woodpecker --help` and
#   docs/configuration.md (scripts/mkman.py);
# - `cmake --install` (`make install PREFIX=...`): the headers, both
#   libraries, wp, woodpecker, woodpecker.pc, the CMake package
#   (find_package(Woodpecker): Woodpecker::woodpecker), the man pages,
#   woodpecker.example.yaml and examples/ under share/doc/woodpecker;
# - their tests: tests/packaging/.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(WP_SOVERSION 0)
set(WP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Woodpecker)

# The shared library is the static archive linked whole (its objects are
# compiled once, for both), so the archive is position-independent code;
# -fno-semantic-interposition keeps calls inside the library direct, as in
# the executables. Not in the fuzz build, which has no use for it.
if(NOT WP_FUZZ)
  set_property(TARGET woodpecker PROPERTY POSITION_INDEPENDENT_CODE ON)
  target_compile_options(woodpecker PRIVATE -fno-semantic-interposition)
  set(WP_MAP ${CMAKE_SOURCE_DIR}/src/libwoodpecker.map)
  add_library(woodpecker_shared SHARED ${WP_MAP})
  set_target_properties(woodpecker_shared PROPERTIES
      OUTPUT_NAME woodpecker EXPORT_NAME woodpecker LINKER_LANGUAGE C
      VERSION ${PROJECT_VERSION} SOVERSION ${WP_SOVERSION} LINK_DEPENDS ${WP_MAP})
  target_include_directories(woodpecker_shared INTERFACE
      $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(woodpecker_shared PRIVATE
      -Wl,--whole-archive woodpecker -Wl,--no-whole-archive)
  target_link_options(woodpecker_shared PRIVATE LINKER:--version-script=${WP_MAP})
  if(NOT WP_SANITIZE AND NOT WP_TSAN)
    # Every symbol resolved at link time: the .so names all it needs.
    target_link_options(woodpecker_shared PRIVATE LINKER:--no-undefined)
  endif()
endif()

# Man pages: each generated from its one source, so they cannot drift.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND AND NOT WP_FUZZ AND NOT CMAKE_CROSSCOMPILING)
  set(WP_MKMAN ${CMAKE_SOURCE_DIR}/scripts/mkman.py)
  set(WP_MAN_DIR ${CMAKE_BINARY_DIR}/man)
  set(WP_MAN_PAGES ${WP_MAN_DIR}/wp.1 ${WP_MAN_DIR}/woodpecker.8 ${WP_MAN_DIR}/woodpecker.yaml.5)
  set(WP_MAN_COMMON --version ${PROJECT_VERSION})
  add_custom_command(OUTPUT ${WP_MAN_DIR}/wp.1
      COMMAND ${CMAKE_COMMAND} -E make_directory ${WP_MAN_DIR}
      COMMAND ${Python3_EXECUTABLE} ${WP_MKMAN} help --name wp --section 1 ${WP_MAN_COMMON}
              --summary "command-line client of the Woodpecker write-ahead log"
              --see-also "woodpecker.yaml(5)" --see-also "woodpecker(8)"
              -o ${WP_MAN_DIR}/wp.1 $<TARGET_FILE:wp>
      DEPENDS wp ${WP_MKMAN} VERBATIM)
  add_custom_command(OUTPUT ${WP_MAN_DIR}/woodpecker.8
      COMMAND ${CMAKE_COMMAND} -E make_directory ${WP_MAN_DIR}
      COMMAND ${Python3_EXECUTABLE} ${WP_MKMAN} help --name woodpecker --section 8 ${WP_MAN_COMMON}
              --summary "the Woodpecker servers (LogStore)"
              --see-also "woodpecker.yaml(5)" --see-also "wp(1)"
              -o ${WP_MAN_DIR}/woodpecker.8 $<TARGET_FILE:woodpecker-server>
      DEPENDS woodpecker-server ${WP_MKMAN} VERBATIM)
  add_custom_command(OUTPUT ${WP_MAN_DIR}/woodpecker.yaml.5
      COMMAND ${CMAKE_COMMAND} -E make_directory ${WP_MAN_DIR}
      COMMAND ${Python3_EXECUTABLE} ${WP_MKMAN} markdown --name woodpecker.yaml --section 5
              ${WP_MAN_COMMON}
              --summary "configuration of the Woodpecker write-ahead log (library, wp, woodpecker)"
              --see-also "wp(1)" --see-also "woodpecker(8)"
              -o ${WP_MAN_DIR}/woodpecker.yaml.5 ${CMAKE_SOURCE_DIR}/docs/configuration.md
      DEPENDS ${CMAKE_SOURCE_DIR}/docs/configuration.md ${WP_MKMAN} VERBATIM)
  add_custom_target(man ALL DEPENDS ${WP_MAN_PAGES})
  install(FILES ${WP_MAN_DIR}/wp.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  install(FILES ${WP_MAN_DIR}/woodpecker.yaml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
  install(FILES ${WP_MAN_DIR}/woodpecker.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
  add_test(NAME packaging/man_pages
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/packaging/man_pages.sh ${Python3_EXECUTABLE}
                   ${CMAKE_SOURCE_DIR} ${WP_MAN_DIR} $<TARGET_FILE:wp> $<TARGET_FILE:woodpecker-server>)
  set_tests_properties(packaging/man_pages PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
elseif(NOT WP_FUZZ)
  message(STATUS "man pages not built: python3 not found")
endif()

# Install.
install(FILES ${CMAKE_SOURCE_DIR}/include/woodpecker.h ${CMAKE_SOURCE_DIR}/include/woodpecker_stream.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS woodpecker ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS wp woodpecker-server RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/woodpecker.example.yaml DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
        FILES_MATCHING PATTERN "*.c" PATTERN "Makefile" PATTERN "CMakeLists.txt" PATTERN "*.md")
if(TARGET woodpecker_shared)
  install(TARGETS woodpecker_shared EXPORT WoodpeckerTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT WoodpeckerTargets NAMESPACE Woodpecker:: DESTINATION ${WP_CMAKE_DIR})
endif()

# woodpecker.pc and WoodpeckerConfig.cmake name the static archive's
# dependencies. They are read from the woodpecker target's link libraries
# once the whole CMakeLists.txt is read (a dependency added anywhere is
# included): PkgConfig::X -> the module X was found as, Threads::Threads ->
# -pthread, a plain name -> -lname.
function(wp_packaging_finish)
  get_target_property(libs woodpecker LINK_LIBRARIES)
  set(requires "")
  set(pc_libs "")
  set(cmake_libs "")
  foreach(lib IN LISTS libs)
    set(module "")
    if(lib MATCHES "^PkgConfig::(.+)$")
      set(module "${${CMAKE_MATCH_1}_MODULE_NAME}")
    endif()
    if(module)
      list(APPEND requires ${module})
    elseif(lib STREQUAL "Threads::Threads")
      list(APPEND pc_libs -pthread)
      list(APPEND cmake_libs Threads::Threads)
    elseif(lib MATCHES "^-l")
      list(APPEND pc_libs ${lib})
      list(APPEND cmake_libs ${lib})
    elseif(lib MATCHES "^[A-Za-z0-9_+.-]+$" AND NOT TARGET ${lib})
      list(APPEND pc_libs -l${lib})
      list(APPEND cmake_libs ${lib})
    else()
      message(WARNING "woodpecker.pc: cannot name the link dependency '${lib}'")
    endif()
  endforeach()
  list(JOIN requires " " WP_PC_REQUIRES_PRIVATE)
  list(JOIN pc_libs " " WP_PC_LIBS_PRIVATE)

  # The .pc file is written when installed, for the prefix installed to
  # (`cmake --install --prefix` included); DESTDIR is not part of it.
  set(pc_script ${CMAKE_BINARY_DIR}/woodpecker-pc-install.cmake)
  file(CONFIGURE OUTPUT ${pc_script} @ONLY CONTENT [[
# Generated by cmake/packaging.cmake: writes and installs woodpecker.pc.
set(WP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
foreach(dir LIBDIR INCLUDEDIR)
  set(value "@CMAKE_INSTALL_LIBDIR@")
  if(dir STREQUAL "INCLUDEDIR")
    set(value "@CMAKE_INSTALL_INCLUDEDIR@")
  endif()
  if(NOT IS_ABSOLUTE "${value}")
    set(value "\${prefix}/${value}")
  endif()
  set(WP_PC_${dir} "${value}")
endforeach()
set(WP_VERSION "@PROJECT_VERSION@")
set(WP_PC_REQUIRES_PRIVATE "@WP_PC_REQUIRES_PRIVATE@")
set(WP_PC_LIBS_PRIVATE "@WP_PC_LIBS_PRIVATE@")
configure_file("@CMAKE_SOURCE_DIR@/cmake/woodpecker.pc.in" "@CMAKE_BINARY_DIR@/pkgconfig/woodpecker.pc" @ONLY)
set(dest "@CMAKE_INSTALL_LIBDIR@/pkgconfig")
if(NOT IS_ABSOLUTE "${dest}")
  set(dest "${CMAKE_INSTALL_PREFIX}/${dest}")
endif()
file(INSTALL "@CMAKE_BINARY_DIR@/pkgconfig/woodpecker.pc" DESTINATION "${dest}")
]])
  install(SCRIPT ${pc_script})

  if(TARGET woodpecker_shared)
    configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/WoodpeckerConfig.cmake.in
        ${CMAKE_BINARY_DIR}/WoodpeckerConfig.cmake
        INSTALL_DESTINATION ${WP_CMAKE_DIR}
        PATH_VARS CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR)
    write_basic_package_version_file(${CMAKE_BINARY_DIR}/WoodpeckerConfigVersion.cmake
        VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
    install(FILES ${CMAKE_BINARY_DIR}/WoodpeckerConfig.cmake
                  ${CMAKE_BINARY_DIR}/WoodpeckerConfigVersion.cmake
            DESTINATION ${WP_CMAKE_DIR})
  endif()
endfunction()
cmake_language(DEFER CALL wp_packaging_finish)

# Tests (tests/packaging/): the exports of the .so; the installed tree, and
# the examples built against it with pkg-config and with find_package and
# run. The install test builds unsanitized programs, so not in the
# sanitizer builds.
if(TARGET woodpecker_shared AND Python3_Interpreter_FOUND)
  add_test(NAME packaging/symbols
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/packaging/check_symbols.py
                   $<TARGET_FILE:woodpecker_shared> ${CMAKE_SOURCE_DIR}/include/woodpecker.h)
  set_tests_properties(packaging/symbols PROPERTIES TIMEOUT 60)
endif()
if(TARGET woodpecker_shared AND NOT WP_SANITIZE AND NOT WP_TSAN)
  add_test(NAME packaging/install_and_build
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/packaging/install_and_build.sh
                   ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
  set_tests_properties(packaging/install_and_build PROPERTIES TIMEOUT 600
      ENVIRONMENT "WP_TEST_TMP=${CMAKE_BINARY_DIR}/testtmp")
endif()
