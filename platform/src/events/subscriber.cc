#include "events/subscriber.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "core/wire.h"
#include "observability/telemetry.h"
#include "runtime/reactor.h"
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
  if (m.redelivered && suspect(m, index)) return;
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
  ctx.set_caller(m.verified_user(link_.user()));
  const std::vector<std::string>& publishers = subscriptions_.at(index).publishers;
  if (!publishers.empty() && std::find(publishers.begin(), publishers.end(), ctx.caller()) == publishers.end()) {
    log::warn("{}: a {} event from '{}', not a publisher this subscription accepts: dead-lettered", options_.name,
              event.type(), ctx.caller());
    metric::events_dead_lettered(options_.name, queues_.at(index).queue).inc();
    const Headers headers = {
        {"x-tern-error", fmt::format("PERMISSION_DENIED: publisher '{}' is not accepted", ctx.caller())},
        {"x-tern-subscription", queues_.at(index).queue},
        {Message::kOnBehalfOf, ctx.caller()}};
    // Not worth holding: no retry would make it acceptable.
    dead_letter(m, index, headers, /*hold=*/false);
    return;
  }
  ScopedCurrent current(&ctx);
  const Reactor::Holding holding("event", event.type(), ctx.trace_id());
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
  if (SpanRecord* span = event.type() != v1::SpanBatch::descriptor()->full_name()
                             ? spans_.open(v1::Span::CONSUME, clock.start)
                             : nullptr) {
    span->trace_id = ctx.trace_id();
    span->span_id = ctx.span_id();
    span->parent_span_id = ctx.parent_span_id();
    span->name = event.type();
    span->code = err.code;
    if (!err.ok()) span->error = err.message;
    span->attempt = ctx.attempt();
    span->peer = event.source();
    span->tag_key = "event_id";
    span->tag_value = event.id();
    spans_.commit(span);
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
  const Headers headers = {
      {"x-tern-attempt", std::to_string(attempt + 1)},
      {"x-tern-error", error},
      {"x-tern-subscription", queue},
      {Message::kOnBehalfOf, m.verified_user(link_.user())},
  };
  if (last) {
    log::error("{}: event for {} failed {} times, last with {}: dead-lettered", options_.name, queue, attempt, error);
    metric::events_dead_lettered(options_.name, queue).inc();
    dead_letter(m, index, headers, /*hold=*/true);
    return;
  }
  metric::events_retried(options_.name, queue).inc();
  if (move(m, topology::retry_queue(queue, topology::retry_delay_ms(options_.event_retry_ms, attempt)), headers) == Confirms::Copy::kRefused)
    dead_letter(m, index, headers, /*hold=*/false);
}

void Subscriber::dead_letter(const Message& m, size_t index, const Headers& headers, bool hold) {
  const std::string& queue = queues_.at(index).queue;
  const std::string dead = topology::event_dead_letter_queue(queue);
  if (move(m, dead, headers) != Confirms::Copy::kRefused) return;
  metric::dead_letters_refused(options_.name, dead).inc();
  if (hold && options_.event_attempts > 1) {
    const std::string wait = topology::retry_queue(
        queue, topology::retry_delay_ms(options_.event_retry_ms, options_.event_attempts - 1));
    log::error("{}: {} refused an event (full?): it waits in {} and is tried again from there", options_.name, dead,
               wait);
    if (move(m, wait, headers) != Confirms::Copy::kRefused) return;
  }
  log::error("{}: {} refused an event (full?): it was dropped", options_.name, dead);
  link_.ack(m);
}

bool Subscriber::suspect(const Message& m, size_t index) {
  if (link_.broken()) return false;   // nothing can be moved: it comes back anyway
  const std::string& queue = queues_.at(index).queue;
  const bool from_suspects = m.consumer_tag == topology::suspect_tag(index);
  const uint32_t next = std::min<uint32_t>(m.deliveries, 1u << 20) + 1;
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& h : m.headers)
    if (h.first != "x-tern-deliveries" && h.first != Message::kOnBehalfOf) headers.push_back(h);
  headers.emplace_back("x-tern-deliveries", std::to_string(next));
  headers.emplace_back(Message::kOnBehalfOf, m.verified_user(link_.user()));
  std::string target = topology::suspect_queue(queue);
  if (!from_suspects) {
    // In flight at a crash, with others: it waits to be handled alone.
  } else if (next > static_cast<uint32_t>(std::max(options_.max_deliveries, 1))) {
    // It was the one running when its instance died, again.
    log::error("{}: an event for {} was delivered {} times, the last ones alone, and never finished (its handler "
               "crashes?): dead-lettered",
               options_.name, queue, m.deliveries);
    metric::events_dead_lettered(options_.name, queue).inc();
    headers.emplace_back("x-tern-error", fmt::format("delivered {} times without finishing", m.deliveries));
    headers.emplace_back("x-tern-subscription", queue);
    target = topology::event_dead_letter_queue(queue);
  } else {
    log::warn("{}: an event for {} was running alone when its instance died ({} deliveries): it goes back to the "
              "suspects", options_.name, queue, m.deliveries);
  }
  if (store_copy(m, target, headers) == Confirms::Copy::kStored) {
    link_.ack(m);
    return true;
  }
  // Not stored (say the queue's leader is being elected): handle it here
  // rather than requeue it in a loop, each return counted by a quorum
  // queue's delivery limit.
  log::warn("{}: the broker did not confirm the copy of an event to {}: handling it here", options_.name, target);
  return false;
}

Confirms::Copy Subscriber::store_copy(const Message& m, const std::string& queue, const Headers& headers) {
  AmqpConnection::Publish p;
  p.routing_key = queue;
  p.body = m.body;
  p.headers = &headers;
  p.persistent = true;
  p.answers_delivery = true;
  return confirms_.copy(p, Clock::now() + Confirms::kRepublishWait);
}

Confirms::Copy Subscriber::move(const Message& m, const std::string& queue, const Headers& headers) {
  const Confirms::Copy copy = store_copy(m, queue, headers);
  if (copy == Confirms::Copy::kStored) {
    link_.ack(m);
  } else if (copy == Confirms::Copy::kUnknown) {
    log::warn("{}: the broker did not confirm the copy of an event to {}: it goes back to its queue", options_.name,
              queue);
    link_.requeue(m);
  }
  return copy;
}

}  // namespace tern::detail
