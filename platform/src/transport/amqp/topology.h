// Every queue, exchange, consumer tag and argument tern puts on the broker,
// in one place. Pure: declare_*() only tell a Declarer what to declare, so a
// recording Declarer can check the whole topology in a unit test.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tern::detail::topology {

// Exchanges.
inline constexpr const char* kEventExchange = "tern.events";     // topic: events
inline constexpr const char* kTraceExchange = "tern.traces";     // topic: span batches
inline constexpr const char* kSpanBatchKey = "tern.v1.span_batch";   // their routing key
inline constexpr const char* kSpanBatchTtlMs = "60000";   // a batch nobody collects within a minute is dropped
inline constexpr const char* kCancelExchange = "tern.cancel";    // direct: cancel notices
// Direct reply-to: no reply queue to declare.
inline constexpr const char* kReplyTo = "amq.rabbitmq.reply-to";

// Consumer tags: the broker link dispatches deliveries by them.
inline constexpr const char* kReplyTag = "tern.replies";
inline constexpr const char* kRequestTag = "tern.requests";
inline constexpr const char* kOverflowTag = "tern.overflow";
inline constexpr const char* kCancelTag = "tern.cancel";
std::string subscription_tag(size_t index);   // "tern.sub.<index>"
std::string suspect_tag(size_t index);        // "tern.suspect.<index>"

// Queue names, from the service's name (its request queue).
std::string overflow_queue(std::string_view service);       // "<service>.overflow"
std::string dead_letter_queue(std::string_view service);    // "<service>.dead-letter"
// "<service>.on.<pattern>", or "<service>.on.<exchange>.<pattern>" off tern.events.
std::string subscription_queue(std::string_view service, std::string_view exchange,
                               std::string_view pattern);
// Retry n's delay, base_ms * 2^(n-1), and its queue, named by the delay
// ("<queue>.retry.<ms>ms"): instances configured with different delays
// each get their own queues rather than one failing to declare the other's.
int64_t retry_delay_ms(int64_t base_ms, int n);
std::string retry_queue(std::string_view subscription, int64_t delay_ms);
std::string event_dead_letter_queue(std::string_view subscription);   // "<queue>.dead-letter"
// Where events in flight at a crash wait to be handled one at a time.
std::string suspect_queue(std::string_view subscription);   // "<queue>.suspects"

// A queue argument (x-max-length, x-message-ttl, ...): a number or a string.
struct QueueArg {
  std::string key;
  std::variant<int64_t, std::string> value;
  bool operator==(const QueueArg&) const = default;
};
using QueueArgs = std::vector<QueueArg>;

// What the topology asks of a connection; AmqpConnection implements it.
class Declarer {
 public:
  virtual ~Declarer() = default;
  virtual void declare_queue(const std::string& name, const QueueArgs& args) = 0;   // durable
  virtual std::string declare_private_queue() = 0;   // exclusive, auto-delete; its name
  virtual void declare_exchange(const std::string& name, const char* type) = 0;   // durable
  virtual void bind(const std::string& queue, const std::string& exchange, const std::string& key) = 0;
  virtual void qos(uint16_t prefetch) = 0;
  virtual void consume(const std::string& queue, const std::string& tag, bool no_ack) = 0;
  virtual void open_event_channel() = 0;   // publisher confirms on the event channel
};

struct Subscription {
  std::string queue;      // subscription_queue(...)
  std::string exchange;   // a topic exchange: tern.events, tern.traces
  std::string pattern;
};

// What a process asks of the broker. Defaults as Options has them.
struct Spec {
  std::string service;    // its request queue; empty for a client
  int prefetch = 100;
  std::vector<Subscription> subscriptions;
  bool tracing = true;
  bool quorum_requests = false;
  bool quorum_events = false;
  int64_t max_queue_length = 10000;
  int max_deliveries = 5;
  int event_attempts = 5;
  int64_t event_retry_ms = 1000;
};

// The publishing connection: consumes direct reply-to, publishes requests,
// replies and (confirmed) events.
void declare_publisher(Declarer& d, const Spec& spec);
// The consuming connection: the service's queues, cancel notices and
// subscriptions, but not the consumers of requests and events (consume()).
void declare_consumer(Declarer& d, const Spec& spec);
// Starts the consumers of requests and subscriptions, and of each
// subscription's suspects with a prefetch of 1: one at a time.
void consume(Declarer& d, const Spec& spec);
// After the broker cancelled the consumer `tag` (its queue was deleted):
// declares that queue again with the queues, bindings and arguments it
// goes with, and consumes it. False for a consumer it cannot put back (the
// cancel notices' server-named queue, direct reply-to).
bool redeclare(Declarer& d, const Spec& spec, std::string_view tag);
// After the consuming channel was closed and opened again: its qos and
// every consumer (requests and subscriptions only if requests_too).
void consume_again(Declarer& d, const Spec& spec, bool requests_too);

}  // namespace tern::detail::topology
