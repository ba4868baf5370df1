// Calling another service: tern::call<Resp>(ctx, "service.x", "endpoint", req).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <google/protobuf/message_lite.h>

#include "tern/context.h"
#include "tern/error.h"

namespace tern {

struct CallOptions {
  std::chrono::milliseconds timeout{2000};  // per call; never past the caller's deadline
  // Attempts in all. Only retryable failures are retried (UNAVAILABLE, or an
  // error a handler marked retryable), with exponential backoff and full
  // jitter, within the client's retry budget and the deadline.
  int max_attempts = 3;
  // Each attempt's own timeout; 0: whatever is left of the call's.
  std::chrono::milliseconds attempt_timeout{0};
  // The endpoint is safe to run twice: an attempt that timed out is retried
  // too (it may still be running).
  bool idempotent = false;
  // Makes the call idempotent whatever the endpoint: the server runs the
  // handler once per key and replays its answer to retries and repeats.
  std::string idempotency_key;
};

// Carries serialized requests to services and their replies back.
// Implemented by the AMQP runtime, and by tern::testing::FakeTransport for
// unit tests without a broker.
class Transport {
 public:
  virtual ~Transport() = default;
  // Suspends the calling fiber (never blocks its thread) until the reply or
  // an error; returns by min(ctx's deadline, now + opts.timeout) at the latest.
  // On success the result holds the serialized endpoint response.
  virtual Result<std::string> call(const Context& ctx, std::string_view service,
                                   std::string_view endpoint, std::string body,
                                   const CallOptions& opts) = 0;
  // Publishes a serialized event; see tern::publish. Suspends the calling
  // fiber until the broker confirms or the deadline of ctx.
  virtual Error publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                        std::string body) {
    (void)ctx, (void)type, (void)routing_key, (void)body;
    return Error{Code::kUnimplemented, "this transport cannot publish events"};
  }
  // As publish(), with the envelope's id chosen by the caller: an outbox
  // relaying an event again (after a crash) sends the id it stored, so
  // subscribers can drop the repeat. By default the id is not kept.
  virtual Error publish_with_id(const Context& ctx, std::string_view event_id, std::string_view type,
                                std::string_view routing_key, std::string body) {
    (void)event_id;
    return publish(ctx, type, routing_key, std::move(body));
  }
};

// The call behind tern::call<Resp>, for callers that know the message types
// only at run time (a CLI or a gateway holding dynamic messages built from
// descriptors). Serializes req, sends it exactly as tern::call does (ctx's
// transport, else the calling fiber's tern runtime; ctx's trace and
// remaining deadline; opts), and parses the reply into *resp, which the
// caller owns and which must be of the endpoint's response type. Returns
// tern::ok() with *resp filled in, or the call's error, *resp then
// unspecified: FAILED_PRECONDITION outside a tern runtime with no transport
// on ctx, INTERNAL if the reply does not parse as *resp's type.
Error call_message(const Context& ctx, std::string_view service, std::string_view endpoint,
                   const google::protobuf::MessageLite& req, google::protobuf::MessageLite* resp,
                   const CallOptions& opts = {});

// Calls service/endpoint with an already serialized request body and returns
// the serialized reply body: for gateways and tools that do not know the
// types at compile time.
Result<std::string> call_bytes(const Context& ctx, std::string_view service,
                               std::string_view endpoint, std::string body,
                               const CallOptions& opts = {});

// Calls service/endpoint with req and returns its reply or a typed error.
// From a fiber of a tern runtime (a handler, Client::run) it suspends only
// the calling fiber. The request inherits ctx's trace and remaining deadline.
template <class Resp, class Req>
Result<Resp> call(const Context& ctx, std::string_view service, std::string_view endpoint,
                  const Req& req, const CallOptions& opts = {}) {
  Resp resp;
  Error err = call_message(ctx, service, endpoint, req, &resp, opts);
  if (!err.ok()) return err;
  return resp;
}

}  // namespace tern
