#include "events/subscriber.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "core/wire.h"
#include "observability/telemetry.h"
#include "tern/envelope.pb.h"
#include "tern/log.h"

namespace tern::detail {

Subscriber::Subscriber(BrokerLink& link, Confirms& confirms, SpanBuffer& spans, Transport& transport,
                       SubscriberOptions options,
                       const std::vector<EventSubscription>& subscriptions,
                       const std::vector<topology::Subscription>& queues)
    : link_(link),
      confirms_(confirms),
      spans_(spans),
      transport_(transport),
      options_(std::move(options)),
      subscriptions_(subscriptions),
      queues_(queues) {}

void Subscriber::handle(Message&& m, size_t index) {
  tern::v1::Event event;
  if (!event.ParseFromString(m.body)) {
    retry(m, index, "message body is not a tern.v1.Event envelope");
    return;
  }
  Context ctx = Context::from_wire(
      to_unix_ms(Context::Clock::now() + std::chrono::milliseconds(options_.event_timeout_ms)), event.trace_id(),
      new_span_id(), event.span_id(), event.id(), event.source(),
      Context::Metadata(event.metadata().begin(), event.metadata().end()),
      m.count_header("x-tern-attempt"));
  ctx.set_transport(&transport_);
  ScopedCurrent current(&ctx);
  const SpanClock clock;
  Error err;
  try {
    err = subscriptions_.at(index).invoke(ctx, event.body());
  } catch (const std::exception& e) {
    err = Error{Code::kInternal, fmt::format("the handler threw: {}", e.what())};
  } catch (...) {
    err = Error{Code::kInternal, "the handler threw"};
  }
  metric::events_consumed(options_.name, event.type(), err.code).inc();
  // Spans about spans would feed themselves.
  if (spans_.tracing() && event.type() != v1::SpanBatch::descriptor()->full_name()) {
    v1::Span span = make_span(v1::Span::CONSUME, ctx.trace_id(), ctx.span_id(), ctx.parent_span_id(), event.type(),
                              clock, err.code, err.message);
    span.set_attempt(ctx.attempt());
    span.set_peer(event.source());
    (*span.mutable_tags())["event_id"] = event.id();
    spans_.record(std::move(span));
  }
  if (err.ok()) {
    link_.ack(m);
  } else {
    log::warn("{}: handling {} event {} failed (attempt {}): {}", options_.name, event.type(), event.id(),
              ctx.attempt(), err.to_string());
    retry(m, index, err.to_string());
  }
}

void Subscriber::retry(const Message& m, size_t index, const std::string& error) {
  const std::string& queue = queues_.at(index).queue;
  const int attempt = static_cast<int>(std::min<uint32_t>(m.count_header("x-tern-attempt"), 1u << 20));
  const bool last = attempt >= options_.event_attempts;
  const std::string target = last ? topology::event_dead_letter_queue(queue) : topology::retry_queue(queue, attempt);
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"x-tern-attempt", std::to_string(attempt + 1)},
      {"x-tern-error", error},
      {"x-tern-subscription", queue},
  };
  if (last) {
    log::error("{}: event for {} failed {} times, last with {}: dead-lettered", options_.name, queue, attempt, error);
    metric::events_dead_lettered(options_.name, queue).inc();
  } else {
    metric::events_retried(options_.name, queue).inc();
  }
  AmqpConnection::Publish p;
  p.routing_key = target;
  p.body = m.body;
  p.headers = &headers;
  p.persistent = true;
  p.answers_delivery = true;
  if (confirms_.publish(p, Clock::now() + Confirms::kRepublishWait) == Confirms::Outcome::kConfirmed) {
    link_.ack(m);
  } else {
    log::warn("{}: the broker did not confirm the retry of an event for {}: it goes back to the queue",
              options_.name, queue);
    link_.requeue(m);
  }
}

}  // namespace tern::detail
