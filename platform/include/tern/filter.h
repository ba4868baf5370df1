// Filters: cross-cutting steps wrapped around calls and requests, in the
// spirit of typhon's `Filter func(Request, Service) Response`. A filter gets
// the call (or request) and `next`, the rest of the chain; it may look at or
// change the call, call `next` (once, several times, or not at all) and look
// at or replace the result.
//
//   // Server side: every request to the service, after the platform's own
//   // checks (deadline, unknown endpoint, rate limit), before idempotent
//   // replay and the handler.
//   svc.use([](tern::Context& ctx, const tern::IncomingRequest& req,
//              const tern::ServerNext& next) -> tern::Result<std::string> {
//     if (!ctx.metadata().count("token")) return tern::Error{tern::Code::kUnauthenticated, "no token"};
//     return next(ctx, req);
//   });
//
//   // Client side: every attempt of every call made from the service's
//   // handlers (or a Client's fibers), inside retries and the circuit
//   // breaker: a result returned without calling `next` is that attempt's.
//   svc.use_on_calls([](const tern::Context& ctx, tern::OutgoingCall& call,
//                       const tern::ClientNext& next) { return next(ctx, call); });
//
// Filters run on the fibers of the service's threads, several at once:
// state they share must be thread-safe, and they must not block the thread.
// The platform's own steps are filters of the same kind: client side
// metrics, deadline, retries, breaker and tracing; server side metrics and
// tracing, the deadline check, the rate limit and idempotent replay.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tern/call.h"
#include "tern/context.h"
#include "tern/error.h"

namespace tern {

// One attempt of a call, as client filters see it.
struct OutgoingCall {
  std::string_view service;
  std::string_view endpoint;
  std::string body;                      // the serialized request; a filter may rewrite it
  const CallOptions* options = nullptr;  // the caller's
  uint32_t attempt = 0;                  // 1 for the first, set by the retry step
  Context::Clock::time_point deadline{}; // this attempt's, never past the context's
  Context::Metadata metadata;            // sent with the request, over the context's
  std::string span_id;                   // this attempt's; empty: the platform makes one
};

class ClientNext;
// Returns the serialized reply, or the attempt's (or call's) error.
using ClientFilter =
    std::function<Result<std::string>(const Context&, OutgoingCall&, const ClientNext& next)>;
using ClientEndpoint = std::function<Result<std::string>(const Context&, OutgoingCall&)>;

// The rest of a client chain. Cheap to copy; valid during the filter's call.
class ClientNext {
 public:
  ClientNext(const std::vector<ClientFilter>* filters, size_t index, const ClientEndpoint* last)
      : filters_(filters), index_(index), last_(last) {}
  Result<std::string> operator()(const Context& ctx, OutgoingCall& call) const;

 private:
  const std::vector<ClientFilter>* filters_;
  size_t index_;
  const ClientEndpoint* last_;
};

// A request, as server filters see it.
struct IncomingRequest {
  std::string_view service;
  std::string_view endpoint;
  std::string_view body;              // the serialized request message
  std::string_view idempotency_key;   // empty: none
};

class ServerNext;
// Returns the serialized reply body, or the request's error.
using ServerFilter =
    std::function<Result<std::string>(Context&, const IncomingRequest&, const ServerNext& next)>;
using ServerEndpoint = std::function<Result<std::string>(Context&, const IncomingRequest&)>;

// The rest of a server chain. Cheap to copy; valid during the filter's call.
class ServerNext {
 public:
  ServerNext(const std::vector<ServerFilter>* filters, size_t index, const ServerEndpoint* last)
      : filters_(filters), index_(index), last_(last) {}
  Result<std::string> operator()(Context& ctx, const IncomingRequest& req) const;

 private:
  const std::vector<ServerFilter>* filters_;
  size_t index_;
  const ServerEndpoint* last_;
};

// Runs `filters` in order around `last`: for the platform, and for tests of
// filters without a broker.
inline Result<std::string> run_chain(const std::vector<ClientFilter>& filters, const ClientEndpoint& last,
                                     const Context& ctx, OutgoingCall& call) {
  return ClientNext(&filters, 0, &last)(ctx, call);
}
inline Result<std::string> run_chain(const std::vector<ServerFilter>& filters, const ServerEndpoint& last,
                                     Context& ctx, const IncomingRequest& req) {
  return ServerNext(&filters, 0, &last)(ctx, req);
}

inline Result<std::string> ClientNext::operator()(const Context& ctx, OutgoingCall& call) const {
  if (index_ >= filters_->size()) return (*last_)(ctx, call);
  return (*filters_)[index_](ctx, call, ClientNext(filters_, index_ + 1, last_));
}

inline Result<std::string> ServerNext::operator()(Context& ctx, const IncomingRequest& req) const {
  if (index_ >= filters_->size()) return (*last_)(ctx, req);
  return (*filters_)[index_](ctx, req, ServerNext(filters_, index_ + 1, last_));
}

}  // namespace tern
