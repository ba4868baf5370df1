// tern new: creates a service folder under services/ from a template.
#pragma once

#include <string>

namespace tern::cli {

// `what` is "service.NAME" (folder services/NAME/) or "api.NAME" (folder
// services/NAME-api/), NAME matching [a-z][a-z0-9_]*; `root` is the
// repository root, which must hold services/. Writes the folder (a proto,
// handlers.h/.cc, main.cc, handlers_test.cc, CMakeLists.txt, README.md),
// never over an existing one, then runs root/scripts/compose if there is one
// so docker-compose.yml includes the service. Prints what it did and the next
// steps. Returns the exit status: 0 done, 1 could not (folder exists, no
// services/, I/O), 2 bad name.
int new_service(const std::string& what, const std::string& root);

}  // namespace tern::cli
