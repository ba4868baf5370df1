#include "tern/call.h"

#include <fmt/format.h>

#include "loop.h"

namespace tern::detail {

Error call_message(const Context& ctx, std::string_view service, std::string_view endpoint,
                   const google::protobuf::MessageLite& req, google::protobuf::MessageLite* resp,
                   const CallOptions& opts) {
  Transport* transport = ctx.transport() ? ctx.transport() : Loop::current();
  if (transport == nullptr)
    return Error{Code::kFailedPrecondition,
                 "tern::call outside a tern runtime: call from a handler or inside Client::run"};
  Result<std::string> reply = transport->call(ctx, service, endpoint, req.SerializeAsString(), opts);
  if (!reply.ok()) return std::move(reply.error());
  if (!resp->ParseFromString(*reply))
    return Error{Code::kInternal, fmt::format("{}/{} replied with a body that is not a {}", service,
                                              endpoint, resp->GetTypeName())};
  return Error{Code::kOk, {}};
}

}  // namespace tern::detail
