# The install rules (TERN_INSTALL): an installed tern is found with
# find_package(tern) (ternConfig.cmake, which also brings tern_add_service
# and tern_add_protos) or with pkg-config (tern.pc). docs/install.md.
#
#   <prefix>/bin/tern                          the CLI (imported target tern::tern)
#   <prefix>/lib/libtern_platform.a            tern::platform
#   <prefix>/lib/libtern_wire.a                tern::wire, the code of proto/tern/*.proto
#   <prefix>/include/tern/*.h                  the public headers
#   <prefix>/include/tern/*.pb.h, *.proto      the wire protos and their generated headers:
#                                              .proto beside .pb.h, as protobuf installs its own
#   <prefix>/lib/cmake/tern/                   ternConfig.cmake, its version file, ternTargets*.cmake,
#                                              tern.cmake and catch_main.cc
#   <prefix>/lib/pkgconfig/tern.pc
include(CMakePackageConfigHelpers)

set(TERN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/tern CACHE STRING
    "Where ternConfig.cmake is installed, under the prefix")
# tern_add_protos' import folder, in which tern/envelope.proto is found.
set(TERN_INSTALL_PROTODIR ${CMAKE_INSTALL_INCLUDEDIR})

set_target_properties(tern_platform PROPERTIES EXPORT_NAME platform)
set_target_properties(tern_wire PROPERTIES EXPORT_NAME wire)
install(TARGETS tern_platform tern_wire tern EXPORT ternTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT ternTargets NAMESPACE tern:: DESTINATION ${TERN_INSTALL_CMAKEDIR})

# Folders, not file lists: a header added to platform/include/tern or a proto
# added to tern_wire is installed without an edit here.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/platform/include/tern
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
get_target_property(wire_source_dir tern_wire SOURCE_DIR)
get_target_property(wire_binary_dir tern_wire BINARY_DIR)
install(DIRECTORY ${wire_binary_dir}/tern
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.pb.h")
install(DIRECTORY ${wire_source_dir}/tern
        DESTINATION ${TERN_INSTALL_PROTODIR} FILES_MATCHING PATTERN "*.proto")

# A static tern::platform names its private dependencies in its link
# interface ($<LINK_ONLY:...>): then the config must find them too, and
# tern.pc lists them as public requirements.
get_target_property(TERN_PLATFORM_TYPE tern_platform TYPE)
configure_package_config_file(cmake/ternConfig.cmake.in ${PROJECT_BINARY_DIR}/ternConfig.cmake
                              INSTALL_DESTINATION ${TERN_INSTALL_CMAKEDIR}
                              PATH_VARS TERN_INSTALL_PROTODIR)
# SameMajorVersion: find_package(tern 1.2) takes any 1.x from 1.2 on, never a
# 2.x, whose headers and helpers may have changed incompatibly.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ternConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ternConfig.cmake ${PROJECT_BINARY_DIR}/ternConfigVersion.cmake
              cmake/tern.cmake cmake/catch_main.cc
        DESTINATION ${TERN_INSTALL_CMAKEDIR})

# tern.pc, in two steps: configured now, but for its prefix, which is the
# one of the install (`cmake --install build --prefix DIR` included), written
# when it runs.
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(TERN_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(TERN_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
if(TERN_PLATFORM_TYPE STREQUAL "STATIC_LIBRARY")
  set(TERN_PC_REQUIRES "protobuf fmt librabbitmq sqlite3 spdlog libssl libcrypto")
  set(TERN_PC_REQUIRES_PRIVATE "")
else()
  set(TERN_PC_REQUIRES "protobuf fmt")
  set(TERN_PC_REQUIRES_PRIVATE "librabbitmq sqlite3 spdlog libssl libcrypto")
endif()
set(TERN_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")   # left for the install to fill in
configure_file(cmake/tern.pc.in ${PROJECT_BINARY_DIR}/tern.pc.in @ONLY)
install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/tern.pc.in\" \"${PROJECT_BINARY_DIR}/tern.pc\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/tern.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
