// Publishing events: tern::publish(ctx, event).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <google/protobuf/message.h>

#include "tern/call.h"
#include "tern/context.h"
#include "tern/error.h"
#include "tern/idempotency.h"

namespace tern {

// Every event goes to this durable topic exchange.
inline constexpr const char* kEventExchange = "tern.events";
// Where processes send their spans (tern.v1.SpanBatch in a tern.v1.Event).
inline constexpr const char* kTraceExchange = "tern.traces";

// The routing key of an event type: its protobuf package, a dot, and its
// message name in snake_case: `transaction.TransactionCreated` is published
// as "transaction.transaction_created".
std::string event_routing_key(const google::protobuf::Descriptor* type);

namespace detail {
Error run_once_per_event(IdempotencyStore& store, const std::string& event_id,
                         const std::function<Error()>& handler);
}  // namespace detail

// Wraps a subscriber's handler so that it runs once per event id: delivery
// is at least once, and a duplicate (a redelivery, a replay from the
// dead-letter queue) whose id the store has seen succeed is acked without
// running the handler. A duplicate arriving while the first is still being
// handled is retried later.
//
//   svc.subscribe<Created>("transaction.created",
//                          tern::once_per_event<Created>(store, OnCreated));
template <class Event, class F>
auto once_per_event(std::shared_ptr<IdempotencyStore> store, F handler) {
  return [store = std::move(store), h = std::move(handler)](Context& ctx, const Event& event) -> Error {
    return detail::run_once_per_event(*store, ctx.request_id(), [&] { return h(ctx, event); });
  };
}

// Publishes `event` (persistent, wrapped in a tern.v1.Event envelope with a
// new id, its type, the source service, the time and ctx's trace) and
// suspends the calling fiber until the broker confirms it has stored it.
// Many fibers may have publishes awaiting confirms at once.
// Returns tern::ok() once confirmed. Otherwise the event may or may not have
// been stored, and the error says so: UNAVAILABLE if the broker refused it
// (nack) or the connection or its channel was lost first (a channel error:
// a publish to a deleted exchange), DEADLINE_EXCEEDED if no confirm came by
// ctx's deadline; both carry the param outcome=unknown. UNAVAILABLE with
// outcome=not sent, at once, if it was not sent: the link is down, or the
// broker blocks publishing (a memory or disk alarm, named). Never kOk
// for an event that was not confirmed. FAILED_PRECONDITION outside a tern
// runtime when ctx has no transport of its own.
// Not a template: callers that know the event's type only at run time (a
// dynamic message built from a descriptor, as the CLI does) call it too; the
// type and routing key come from event's descriptor.
Error publish(const Context& ctx, const google::protobuf::Message& event);

}  // namespace tern
