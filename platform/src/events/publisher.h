// The publisher: a reactor thread's confirmed event publishes. An event goes
// out persistent on the event channel (publisher confirms) and the calling
// fiber parks until the broker's ack or nack, a lost link, or the context's
// deadline. Reactor thread only.
#pragma once

#include <cstdint>
#include <string>

#include "observability/span_buffer.h"
#include "tern/context.h"
#include "tern/error.h"
#include "transport/amqp/broker_link.h"
#include "transport/amqp/confirms.h"

namespace tern::detail {

class Publisher {
 public:
  // name: the events' source; max_message_bytes: larger envelopes fail.
  Publisher(BrokerLink& link, Confirms& confirms, SpanBuffer& spans, std::string name, size_t max_message_bytes);
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Transport::publish. On failure, param "outcome" says whether the event
  // was "not sent" or its fate is "unknown" (sent, no confirm).
  // event_id: the envelope's id; empty: a new one.
  Error publish(const Context& ctx, std::string_view type, std::string_view routing_key, std::string body,
                std::string_view event_id = {});

 private:
  Error publish_confirmed(const Context& ctx, std::string_view type, std::string_view routing_key,
                          std::string body, const std::string& span_id, std::string_view event_id);

  BrokerLink& link_;
  Confirms& confirms_;
  SpanBuffer& spans_;
  const std::string name_;
  const size_t max_message_bytes_;
};

}  // namespace tern::detail
