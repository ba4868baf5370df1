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

# tern_add_service(<name> SOURCES <files>... [PROTOS <files>...] [LIBS <targets>...])
#   Builds the service executable bin/<name>, linked to tern::platform and to
#   the code generated from its own protos.
function(tern_add_service name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PROTOS;LIBS" ${ARGN})
  if(ARG_PROTOS)
    tern_add_protos(${name}_protos ${ARG_PROTOS})
    list(APPEND ARG_LIBS ${name}_protos)
    # The tern CLI links every service's messages, so `tern publish TYPE`
    # knows the event types of the system.
    set_property(GLOBAL APPEND PROPERTY TERN_SERVICE_PROTOS ${name}_protos)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE tern::platform ${ARG_LIBS})
endfunction()
