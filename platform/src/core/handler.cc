#include "tern/handler.h"

#include <fmt/format.h>

namespace tern::detail {

Error unparsable_request(const google::protobuf::Descriptor* type) {
  return Error{Code::kInvalidArgument, fmt::format("request body is not a valid {}", type->full_name())}
      .with_param("body", "invalid")
      .with_local({.dead_letter = true});
}

}  // namespace tern::detail
