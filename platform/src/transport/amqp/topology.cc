#include "transport/amqp/topology.h"

#include <algorithm>

#include <fmt/format.h>

namespace tern::detail::topology {

std::string subscription_tag(size_t index) { return fmt::format("tern.sub.{}", index); }
std::string suspect_tag(size_t index) { return fmt::format("tern.suspect.{}", index); }
std::string overflow_queue(std::string_view service) { return fmt::format("{}.overflow", service); }
std::string dead_letter_queue(std::string_view service) { return fmt::format("{}.dead-letter", service); }
std::string subscription_queue(std::string_view service, std::string_view exchange,
                               std::string_view pattern) {
  if (exchange == kEventExchange) return fmt::format("{}.on.{}", service, pattern);
  return fmt::format("{}.on.{}.{}", service, exchange, pattern);
}
int64_t retry_delay_ms(int64_t base_ms, int n) { return base_ms << std::clamp(n - 1, 0, 20); }
std::string retry_queue(std::string_view subscription, int64_t delay_ms) {
  return fmt::format("{}.retry.{}ms", subscription, delay_ms);
}
std::string event_dead_letter_queue(std::string_view subscription) {
  return fmt::format("{}.dead-letter", subscription);
}
std::string suspect_queue(std::string_view subscription) { return fmt::format("{}.suspects", subscription); }

namespace {
// Quorum queues are replicated over a majority of a cluster's nodes and
// outlive the loss of any minority; classic ones live on one node.
QueueArgs typed(bool quorum, QueueArgs args) {
  if (quorum) args.push_back({"x-queue-type", std::string("quorum")});
  return args;
}
}  // namespace

void declare_publisher(Declarer& d, const Spec& spec) {
  // Direct reply-to: consumed without acks on the channel requests go out on.
  d.consume(kReplyTo, kReplyTag, /*no_ack=*/true);
  d.open_event_channel();
  d.declare_exchange(kEventExchange, "topic");
  d.declare_exchange(kCancelExchange, "direct");
  if (spec.tracing) d.declare_exchange(kTraceExchange, "topic");
}

namespace {

// The request queue and the two it dead-letters to.
void declare_request_queues(Declarer& d, const Spec& spec) {
  const std::string overflow = overflow_queue(spec.service);
  d.declare_queue(overflow, typed(spec.quorum_requests, {}));
  // Past max_queue_length a classic queue refuses the publish and
  // dead-letters it to the overflow queue, where it is answered
  // RESOURCE_EXHAUSTED. Quorum queues have no reject-publish-dlx (RabbitMQ
  // 3.10): they drop their oldest request to the overflow queue instead,
  // which is answered the same way.
  const char* overflow_mode = spec.quorum_requests ? "drop-head" : "reject-publish-dlx";
  d.declare_queue(spec.service, typed(spec.quorum_requests, {{"x-max-length", spec.max_queue_length},
                                                             {"x-overflow", std::string(overflow_mode)},
                                                             {"x-dead-letter-exchange", std::string()},
                                                             {"x-dead-letter-routing-key", overflow}}));
  d.declare_queue(dead_letter_queue(spec.service), typed(spec.quorum_requests, {}));
}

// A subscription queue, its binding, retry queues and dead-letter queue.
void declare_subscription(Declarer& d, const Spec& spec, const Subscription& sub) {
  const std::string dead = event_dead_letter_queue(sub.queue);
  // Events in flight when an instance died wait in the suspects queue and
  // are handled one at a time, so a crash there is charged to the one
  // event running (the subscriber counts them in x-tern-deliveries). A
  // quorum queue's delivery limit is only a backstop, for crashes before
  // an event could be moved (unchanged since before the suspects: a
  // queue's arguments cannot change once declared).
  const int64_t backstop = std::max(spec.max_deliveries, 1);
  for (const std::string& q : {sub.queue, suspect_queue(sub.queue)}) {
    if (spec.quorum_events)
      d.declare_queue(q, typed(true, {{"x-delivery-limit", backstop},
                                      {"x-dead-letter-exchange", std::string()},
                                      {"x-dead-letter-routing-key", dead}}));
    else
      d.declare_queue(q, {});
  }
  if (sub.exchange != kEventExchange) d.declare_exchange(sub.exchange, "topic");
  d.bind(sub.queue, sub.exchange, sub.pattern);
  // Retry n waits event_retry_ms * 2^(n-1) in its own queue, then goes
  // back to the subscription queue: FIFO per delay, no head-of-line wait.
  for (int n = 1; n < spec.event_attempts; ++n)
    d.declare_queue(retry_queue(sub.queue, retry_delay_ms(spec.event_retry_ms, n)),
                    typed(spec.quorum_events, {{"x-message-ttl", retry_delay_ms(spec.event_retry_ms, n)},
                                               {"x-dead-letter-exchange", std::string()},
                                               {"x-dead-letter-routing-key", sub.queue}}));
  d.declare_queue(dead, typed(spec.quorum_events, {}));
}

}  // namespace

void declare_consumer(Declarer& d, const Spec& spec) {
  if (spec.service.empty()) return;
  declare_request_queues(d, spec);
  // Requests refused by the full queue come back here to be answered.
  d.consume(overflow_queue(spec.service), kOverflowTag, /*no_ack=*/true);
  // Cancel notices for this service reach every instance and thread.
  const std::string notices = d.declare_private_queue();
  d.bind(notices, kCancelExchange, spec.service);
  d.consume(notices, kCancelTag, /*no_ack=*/true);
  d.qos(static_cast<uint16_t>(std::clamp(spec.prefetch, 1, 65535)));
  for (const Subscription& sub : spec.subscriptions) declare_subscription(d, spec, sub);
}

bool redeclare(Declarer& d, const Spec& spec, std::string_view tag) {
  if (spec.service.empty()) return false;
  if (tag == kRequestTag || tag == kOverflowTag) {
    declare_request_queues(d, spec);
    if (tag == kRequestTag) d.consume(spec.service, kRequestTag, /*no_ack=*/false);
    else d.consume(overflow_queue(spec.service), kOverflowTag, /*no_ack=*/true);
    return true;
  }
  for (size_t i = 0; i < spec.subscriptions.size(); ++i) {
    if (tag == subscription_tag(i)) {
      declare_subscription(d, spec, spec.subscriptions[i]);
      d.consume(spec.subscriptions[i].queue, subscription_tag(i), /*no_ack=*/false);
      return true;
    }
    if (tag == suspect_tag(i)) {   // one at a time, as consume() starts it
      declare_subscription(d, spec, spec.subscriptions[i]);
      d.qos(1);
      d.consume(suspect_queue(spec.subscriptions[i].queue), suspect_tag(i), /*no_ack=*/false);
      d.qos(static_cast<uint16_t>(std::clamp(spec.prefetch, 1, 65535)));
      return true;
    }
  }
  return false;   // cancel notices' private queue, direct reply-to: not by name
}

void consume_again(Declarer& d, const Spec& spec, bool requests_too) {
  if (spec.service.empty()) return;
  d.qos(static_cast<uint16_t>(std::clamp(spec.prefetch, 1, 65535)));
  d.consume(overflow_queue(spec.service), kOverflowTag, /*no_ack=*/true);
  const std::string notices = d.declare_private_queue();
  d.bind(notices, kCancelExchange, spec.service);
  d.consume(notices, kCancelTag, /*no_ack=*/true);
  if (requests_too) consume(d, spec);
}

void consume(Declarer& d, const Spec& spec) {
  if (spec.service.empty()) return;
  // basic.qos applies to the consumers started after it.
  if (!spec.subscriptions.empty()) {
    d.qos(1);
    for (size_t i = 0; i < spec.subscriptions.size(); ++i)
      d.consume(suspect_queue(spec.subscriptions[i].queue), suspect_tag(i), /*no_ack=*/false);
    d.qos(static_cast<uint16_t>(std::clamp(spec.prefetch, 1, 65535)));
  }
  d.consume(spec.service, kRequestTag, /*no_ack=*/false);
  for (size_t i = 0; i < spec.subscriptions.size(); ++i)
    d.consume(spec.subscriptions[i].queue, subscription_tag(i), /*no_ack=*/false);
}

}  // namespace tern::detail::topology
