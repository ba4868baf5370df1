#include "tern/call.h"

#include <fmt/format.h>

#include "core/current.h"

namespace tern {
namespace detail {
namespace {

Error no_runtime() {
  return Error{Code::kFailedPrecondition,
               "tern::call outside a tern runtime: call from a handler or inside Client::run"};
}

}  // namespace
}  // namespace detail

Error call_message(const Context& ctx, std::string_view service, std::string_view endpoint,
                   const google::protobuf::MessageLite& req, google::protobuf::MessageLite* resp,
                   const CallOptions& opts) {
  Transport* transport = detail::transport_for(ctx);
  if (transport == nullptr) return detail::no_runtime();
  Result<std::string> reply = transport->call(ctx, service, endpoint, req.SerializeAsString(), opts);
  if (!reply.ok()) return std::move(reply.error());
  if (!resp->ParseFromString(*reply))
    return Error{Code::kInternal, fmt::format("{}/{} replied with a body that is not a {}", service,
                                              endpoint, resp->GetTypeName())};
  return ok();
}

Result<std::string> call_bytes(const Context& ctx, std::string_view service,
                               std::string_view endpoint, std::string body,
                               const CallOptions& opts) {
  Transport* transport = detail::transport_for(ctx);
  if (transport == nullptr) return detail::no_runtime();
  return transport->call(ctx, service, endpoint, std::move(body), opts);
}

}  // namespace tern
