#include "events/publisher.h"

#include <fmt/format.h>

#include "core/utf8.h"
#include "core/wire.h"
#include "observability/telemetry.h"
#include "tern/envelope.pb.h"
#include "transport/amqp/topology.h"

namespace tern::detail {

Publisher::Publisher(BrokerLink& link, Confirms& confirms, SpanBuffer& spans, std::string name,
                     size_t max_message_bytes)
    : link_(link), confirms_(confirms), spans_(spans), name_(std::move(name)), max_message_bytes_(max_message_bytes) {}

Error Publisher::publish(const Context& ctx, std::string_view type, std::string_view routing_key,
                         std::string body, std::string_view event_id) {
  const SpanClock clock;
  const std::string span_id = new_span_id();
  Error e = publish_confirmed(ctx, type, routing_key, std::move(body), span_id, event_id);
  metric::events_published(name_, type, e.ok()).inc();
  if (SpanRecord* span = spans_.open(v1::Span::PUBLISH, clock.start)) {
    span->trace_id = ctx.trace_id();
    span->span_id = span_id;
    span->parent_span_id = ctx.span_id();
    span->name = type;
    span->code = e.code;
    if (!e.ok()) span->error = e.message;
    if (auto it = e.params.find("outcome"); it != e.params.end()) {
      span->tag_key = "outcome";
      span->tag_value = it->second;
    }
    spans_.commit(span);
  }
  return e;
}

Error Publisher::publish_confirmed(const Context& ctx, std::string_view type, std::string_view routing_key,
                                   std::string body, const std::string& span_id, std::string_view event_id) {
  if (link_.broken()) return Error{Code::kUnavailable, link_.broken_reason()}.with_param("outcome", "not sent");
  // Retryable (UNAVAILABLE): nothing was sent, and the alarm may clear.
  if (link_.blocked())
    return Error{Code::kUnavailable, fmt::format("{}; the {} event was not sent", link_.blocked_reason(), type)}
        .with_param("outcome", "not sent");
  if (ctx.expired())
    return Error{Code::kDeadlineExceeded, "deadline passed before publishing"}.with_param("outcome", "not sent");
  if (routing_key.empty() || routing_key.size() > 255 || !utf8::valid(routing_key))
    return Error{Code::kInvalidArgument,
                 fmt::format("an event routing key of {} bytes: it must be 1 to 255 bytes of UTF-8", routing_key.size())}
        .with_param("outcome", "not sent");
  tern::v1::Event event;
  const std::string id = event_id.empty() ? new_trace_id() : std::string(event_id);
  event.set_id(id);
  event.set_type(std::string(type));
  event.set_source(name_);
  event.set_time_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count());
  event.set_trace_id(ctx.trace_id());
  event.set_span_id(span_id);   // the publish span: the parent of each consumer's span
  event.set_body(std::move(body));
  for (const auto& [k, v] : ctx.metadata()) (*event.mutable_metadata())[k] = v;
  std::string wire = event.SerializeAsString();
  if (wire.size() > max_message_bytes_)
    return Error{Code::kInvalidArgument, fmt::format("{} event is {} bytes, over the {} byte limit", type,
                                                     wire.size(), max_message_bytes_)}
        .with_param("outcome", "not sent");

  AmqpConnection::Publish p;
  p.exchange = topology::kEventExchange;
  p.routing_key = routing_key;
  p.body = wire;
  p.persistent = true;  // the envelope carries id and type: no AMQP properties for them
  switch (confirms_.publish(p, ctx.deadline())) {
    case Confirms::Outcome::kConfirmed:
      return ok();
    case Confirms::Outcome::kNotSent:
      return Error{Code::kUnavailable, link_.refusal()}.with_param("outcome", "not sent");
    case Confirms::Outcome::kNacked:
      return Error{Code::kUnavailable, fmt::format("the broker refused {} event {} (nack)", type, id)}
          .with_param("outcome", "unknown");
    case Confirms::Outcome::kChannelLost:
      return Error{Code::kUnavailable,
                   fmt::format("{}; {} event {} may or may not be stored", confirms_.lost_reason(), type, id)}
          .with_param("outcome", "unknown");
    case Confirms::Outcome::kUnknown:
      break;
  }
  if (link_.broken()) return Error{Code::kUnavailable, link_.broken_reason()}.with_param("outcome", "unknown");
  return Error{Code::kDeadlineExceeded, fmt::format("no confirm for {} event {} by the deadline", type, id)}
      .with_param("outcome", "unknown");
}

}  // namespace tern::detail
