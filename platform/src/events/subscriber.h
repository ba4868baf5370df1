// The subscriber of one reactor thread: runs each event delivered to a
// subscription queue through its handler and ends with an ack, or a retry:
// the event goes to the subscription's next retry queue (its delay), or past
// the last attempt to its dead-letter queue, with the error in a header.
// The original is acked only once the broker confirms that copy; else it
// goes back to its queue. Delivery is at least once. An event redelivered
// after a crash (its instance's or connection's) may be the cause: it moves
// to the subscription's suspects queue, where events are handled one at a
// time, so a crash there is charged to the one event running; past
// max_deliveries it is dead-lettered, and the innocents in flight with it
// are not. Reactor thread only.
#pragma once

#include <string>
#include <vector>

#include "observability/span_buffer.h"
#include "tern/call.h"
#include "tern/handler.h"
#include "transport/amqp/broker_link.h"
#include "transport/amqp/confirms.h"
#include "transport/amqp/topology.h"

namespace tern::detail {

struct SubscriberOptions {
  std::string name;               // the service
  int event_attempts = 5;         // tries in all before the dead-letter queue
  int64_t event_retry_ms = 1000;  // the first retry's delay (names its queue)
  int event_timeout_ms = 30000;   // each handler run's deadline
  int max_deliveries = 5;         // crashes charged to an event before the dead-letter queue
};

class Subscriber {
 public:
  // subscriptions[i] is delivered with consumer tag topology::subscription_tag(i)
  // from queues[i].queue, and topology::suspect_tag(i) from its suspects
  // queue; both outlive the subscriber.
  Subscriber(BrokerLink& link, Confirms& confirms, SpanBuffer& spans, Transport& transport, SubscriberOptions options,
             const std::vector<EventSubscription>& subscriptions,
             const std::vector<topology::Subscription>& queues);

  // Runs in the event's own fiber. Never throws.
  void handle(Message&& m, size_t index);

 private:
  void retry(const Message& m, size_t index, const std::string& error);
  // For a redelivered event: moves or counts it (true), or false to handle it.
  bool suspect(const Message& m, size_t index);
  using Headers = std::vector<std::pair<std::string, std::string>>;
  // Publishes a copy of m to `queue` with `headers` and waits for the
  // broker's confirm.
  Confirms::Copy store_copy(const Message& m, const std::string& queue, const Headers& headers);
  // store_copy, then acks m once the broker has the copy, or requeues it if
  // that is not known; a refused copy leaves m to the caller.
  Confirms::Copy move(const Message& m, const std::string& queue, const Headers& headers);
  // Moves m to its subscription's dead-letter queue. If that refuses it
  // (at its length limit) and `hold`, m waits in the last retry queue and
  // is tried again from there, at the slowest pace, until the dead-letter
  // queue has room; else (or with no retry queue) it is dropped. Both are
  // logged and counted.
  void dead_letter(const Message& m, size_t index, const Headers& headers, bool hold);

  BrokerLink& link_;
  Confirms& confirms_;
  SpanBuffer& spans_;
  Transport& transport_;
  const SubscriberOptions options_;
  const std::vector<EventSubscription>& subscriptions_;
  const std::vector<topology::Subscription>& queues_;
};

}  // namespace tern::detail
