#include "core/ids.h"

#include <unistd.h>

#include <fmt/format.h>

namespace tern::detail {

const std::string& instance_id() {
  static const std::string id = [] {
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    return fmt::format("{}:{}", host, getpid());
  }();
  return id;
}

}  // namespace tern::detail
