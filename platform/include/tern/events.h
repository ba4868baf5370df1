// Publishing events: tern::publish(ctx, event).
#pragma once

#include <string>

#include <google/protobuf/message.h>

#include "tern/call.h"
#include "tern/context.h"
#include "tern/error.h"

namespace tern {

// Every event goes to this durable topic exchange.
inline constexpr const char* kEventExchange = "tern.events";

// The routing key of an event type: its protobuf package, a dot, and its
// message name in snake_case: `transaction.TransactionCreated` is published
// as "transaction.transaction_created".
std::string event_routing_key(const google::protobuf::Descriptor* type);

namespace detail {
Error publish_message(const Context& ctx, const google::protobuf::Message& event);
}

// Publishes `event` (persistent, wrapped in a tern.v1.Event envelope with a
// new id, its type, the source service, the time and ctx's trace) and
// suspends the calling fiber until the broker confirms it has stored it.
// Many fibers may have publishes awaiting confirms at once.
// Returns code kOk once confirmed. Otherwise the event may or may not have
// been stored, and the error says so: UNAVAILABLE if the broker refused it
// (nack) or the connection was lost first, DEADLINE_EXCEEDED if no confirm
// came by ctx's deadline; both carry the param outcome=unknown. Never kOk
// for an event that was not confirmed.
template <class Event>
Error publish(const Context& ctx, const Event& event) {
  return detail::publish_message(ctx, event);
}

}  // namespace tern
