// Nothing: the object library tern_pch exists for its precompiled headers,
// which the CLI and the in-tree services reuse (platform/CMakeLists.txt).
