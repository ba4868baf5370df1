# The helpers for services: in tern's source tree (the top CMakeLists.txt
# includes this file) and from an installed tern (ternConfig.cmake includes
# its copy, installed next to it with catch_main.cc).

# tern's own .proto files (tern/envelope.proto, ...) are imported from proto/
# in the source tree; ternConfig.cmake sets TERN_PROTO_DIR to the installed
# ones before it includes this file. A global property, so the helpers find it
# from any directory, also when tern is a subproject (add_subdirectory).
if(NOT DEFINED TERN_PROTO_DIR)
  get_filename_component(TERN_PROTO_DIR "${CMAKE_CURRENT_LIST_DIR}/../proto" ABSOLUTE)
endif()
set_property(GLOBAL PROPERTY TERN_PROTO_DIR "${TERN_PROTO_DIR}")

# tern_add_protos(<target> <proto files>...)
#   Compiles .proto files into a static library <target> linked to protobuf.
#   Imports resolve against the file's own folder and tern's proto folder.
function(tern_add_protos target)
  # Imported targets are seen only from the directory that found them: a
  # project with tern as a subproject has not found protobuf itself.
  if(NOT TARGET protobuf::libprotobuf)
    find_package(Protobuf REQUIRED)
  endif()
  add_library(${target} STATIC)
  target_sources(${target} PRIVATE ${ARGN})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_BINARY_DIR}>)
  get_property(tern_proto_dir GLOBAL PROPERTY TERN_PROTO_DIR)
  set(import_dirs ${CMAKE_CURRENT_SOURCE_DIR} ${tern_proto_dir})
  protobuf_generate(TARGET ${target} LANGUAGE cpp
                    IMPORT_DIRS ${import_dirs}
                    PROTOC_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
endfunction()

# Outside tern's tree: the one Catch2 main for the services' tests, built
# from the catch_main.cc next to this file, if Catch2 2 is there.
function(_tern_catch_main)
  find_package(Catch2 2 QUIET)
  if(NOT Catch2_FOUND)
    return()
  endif()
  add_library(tern_catch_main STATIC ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/catch_main.cc)
  target_link_libraries(tern_catch_main PUBLIC Catch2::Catch2)
  if(NOT COMMAND catch_discover_tests)
    include(Catch)   # found through the module path Catch2's config just added
  endif()
endfunction()

# tern_add_service(<name> SOURCES <files>... [PROTOS <files>...] [LIBS <targets>...]
#                  [TESTS <files>...])
#   Builds the service executable bin/<name>, linked to tern::platform and to
#   the code generated from its own protos. main.cc holds the wiring; the
#   other SOURCES are the service's logic, which the Catch2 TESTS (no broker
#   needed) are linked with, as test binary bin/<name>_test, run by ctest.
#   TESTS are built, in tern's own tree, when TERN_BUILD_TESTS is on; in any
#   other project (with an installed tern, or tern as a subproject) when
#   BUILD_TESTING is (include(CTest)) and Catch2 2 is found, else they are
#   skipped with a message.
function(tern_add_service name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PROTOS;LIBS;TESTS" ${ARGN})
  if(ARG_PROTOS)
    tern_add_protos(${name}_protos ${ARG_PROTOS})
    list(APPEND ARG_LIBS ${name}_protos)
    # The tern CLI links every service's messages, so `tern publish TYPE`
    # knows the event types of the system.
    set_property(GLOBAL APPEND PROPERTY TERN_SERVICE_PROTOS ${name}_protos)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE tern::platform ${ARG_LIBS})
  set(build_tests ${BUILD_TESTING})
  if(DEFINED tern_SOURCE_DIR)
    cmake_path(IS_PREFIX tern_SOURCE_DIR "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE in_tern)
    if(in_tern)
      set(build_tests ${TERN_BUILD_TESTS})
      # In tern's tree: the platform's precompiled headers (platform/CMakeLists.txt).
      if(TERN_PCH AND TARGET tern_pch)
        target_precompile_headers(${name} REUSE_FROM tern_pch)
      endif()
    endif()
  endif()
  if(ARG_TESTS AND build_tests AND NOT TARGET tern_catch_main)
    _tern_catch_main()
    if(NOT TARGET tern_catch_main)
      message(STATUS "tern_add_service(${name}): no Catch2 2 found, its TESTS are not built")
    endif()
  endif()
  if(ARG_TESTS AND build_tests AND TARGET tern_catch_main)
    set(logic ${ARG_SOURCES})
    list(FILTER logic EXCLUDE REGEX "(^|/)main\\.cc$")
    add_executable(${name}_test ${ARG_TESTS} ${logic})
    target_link_libraries(${name}_test PRIVATE tern::platform tern_catch_main ${ARG_LIBS})
    if(in_tern AND TERN_PCH AND TARGET tern_pch)
      target_precompile_headers(${name}_test REUSE_FROM tern_pch)
    endif()
    catch_discover_tests(${name}_test TEST_PREFIX "${name}: " EXTRA_ARGS --warn NoTests
                         PROPERTIES TIMEOUT 60)
  endif()
endfunction()
