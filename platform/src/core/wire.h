// Conversions between tern's C++ types and the tern.v1 envelope messages.
#pragma once

#include <string>
#include <string_view>

#include "core/envelope_codec.h"
#include "tern/context.h"
#include "tern/envelope.pb.h"
#include "tern/error.h"

namespace tern::detail {

// The message and params are made valid UTF-8 (U+FFFD for bad bytes), as
// protobuf string fields must be: an error may quote what a caller sent,
// and a Response that does not parse would reach the caller as INTERNAL.
void to_wire(const Error& error, tern::v1::Error* out);
Error from_wire(const tern::v1::Error& error);

// A Response to the request with this AMQP correlation_id (any bytes the
// caller chose), its request_id made valid UTF-8 for the same reason.
tern::v1::Response response_for(std::string_view correlation_id);

// The handler's Context for a request read off the wire: the caller's
// deadline, trace, metadata and idempotency key, and a span of its own, a
// child of the caller's attempt span. `correlation_id` stands in for a
// missing request id.
Context request_context(const envelope::RequestView& req, const std::string& correlation_id);

// Parses a serialized tern.v1.Response: its body, or the error it carries.
// A reply that is not a Response is INTERNAL.
Result<std::string> decode_response(std::string bytes, std::string_view service, std::string_view endpoint);

}  // namespace tern::detail
