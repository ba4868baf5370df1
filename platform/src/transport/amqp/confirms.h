// Publishes the broker confirms: a message published on the event channel
// (publisher-confirm mode) counts as stored only once the broker's
// basic.ack for its delivery tag arrives. publish() parks the calling fiber
// until then, a nack, a lost link, or the deadline. Used for events and for
// every republish that must be on the broker before the original is acked
// (retry queues, redelivery counts, dead letters). Reactor thread only.
#pragma once

#include <cstdint>
#include <map>

#include <boost/fiber/context.hpp>

#include "runtime/reactor.h"
#include "transport/amqp/broker_link.h"

namespace tern::detail {

class Confirms {
 public:
  enum class Outcome { kConfirmed, kNotSent, kNacked, kUnknown };

  // Registers for confirms and lost links on `link`.
  explicit Confirms(BrokerLink& link);
  Confirms(const Confirms&) = delete;
  Confirms& operator=(const Confirms&) = delete;

  // Publishes `p` on the event channel and waits. kNotSent: the link was
  // down; kNacked: the broker refused it; kUnknown: the link was lost or
  // the deadline passed before the confirm (it may be stored).
  Outcome publish(AmqpConnection::Publish p, Clock::time_point deadline);

  // The longest a republish waits for its confirm.
  static constexpr std::chrono::seconds kRepublishWait{10};

 private:
  struct Pending;
  void on_confirm(uint64_t tag, bool multiple, bool ack);
  void fail_all();

  BrokerLink& link_;
  std::map<uint64_t, Pending*> pending_;   // by delivery tag on the event channel
};

}  // namespace tern::detail
