# tern_add_protos(<target> <proto files>...)
#   Compiles .proto files into a static library <target> linked to protobuf.
#   Imports resolve against the file's own folder and the repository's proto/.
function(tern_add_protos target)
  add_library(${target} STATIC)
  target_sources(${target} PRIVATE ${ARGN})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf)
  target_include_directories(${target} PUBLIC ${CMAKE_CURRENT_BINARY_DIR})
  set(import_dirs ${CMAKE_CURRENT_SOURCE_DIR} ${tern_SOURCE_DIR}/proto)
  protobuf_generate(TARGET ${target} LANGUAGE cpp
                    IMPORT_DIRS ${import_dirs}
                    PROTOC_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
endfunction()

# tern_add_service(<name> SOURCES <files>... [PROTOS <files>...] [LIBS <targets>...]
#                  [TESTS <files>...])
#   Builds the service executable bin/<name>, linked to tern::platform and to
#   the code generated from its own protos. main.cc holds the wiring; the
#   other SOURCES are the service's logic, which the Catch2 TESTS (no broker
#   needed) are linked with, as test binary bin/<name>_test, run by ctest.
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
  if(ARG_TESTS AND TERN_BUILD_TESTS)
    set(logic ${ARG_SOURCES})
    list(FILTER logic EXCLUDE REGEX "(^|/)main\\.cc$")
    add_executable(${name}_test ${ARG_TESTS} ${logic})
    target_link_libraries(${name}_test PRIVATE tern::platform tern_catch_main ${ARG_LIBS})
    catch_discover_tests(${name}_test TEST_PREFIX "${name}: " EXTRA_ARGS --warn NoTests
                         PROPERTIES TIMEOUT 60)
  endif()
endfunction()
