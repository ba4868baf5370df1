// Conversions between tern's C++ types and the tern.v1 envelope messages.
#pragma once

#include <string>
#include <string_view>

#include "tern/envelope.pb.h"
#include "tern/error.h"

namespace tern::detail {

void to_wire(const Error& error, tern::v1::Error* out);
Error from_wire(const tern::v1::Error& error);

// Parses a serialized tern.v1.Response: its body, or the error it carries.
// A reply that is not a Response is INTERNAL.
Result<std::string> decode_response(const std::string& bytes, std::string_view service,
                                    std::string_view endpoint);

}  // namespace tern::detail
