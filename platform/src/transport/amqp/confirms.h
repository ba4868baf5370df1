// Publishes the broker confirms: a message published on the event channel
// (publisher-confirm mode) counts as stored only once the broker's
// basic.ack for its delivery tag arrives. publish() parks the calling fiber
// until then, a nack, a lost link, or the deadline. Used for events and for
// every republish that must be on the broker before the original is acked
// (retry queues, redelivery counts, dead letters). Reactor thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <boost/fiber/context.hpp>

#include "runtime/reactor.h"
#include "transport/amqp/broker_link.h"

namespace tern::detail {

class Confirms {
 public:
  enum class Outcome { kConfirmed, kNotSent, kNacked, kUnknown, kChannelLost };

  // Registers for confirms and lost links on `link`.
  explicit Confirms(BrokerLink& link);
  Confirms(const Confirms&) = delete;
  Confirms& operator=(const Confirms&) = delete;

  // Publishes `p` on the event channel and waits. kNotSent: it was not
  // queued (BrokerLink::refusal()); kNacked: the broker refused it;
  // kUnknown: the link was lost or the deadline passed before the confirm
  // (it may be stored); kChannelLost: the event channel was closed by a
  // channel error (lost_reason()) before the confirm.
  //
  // A channel error (a publish to a deleted exchange...) closes the event
  // channel: every publish waiting for its confirm then ends kChannelLost. The
  // broker may have stored those before the one that caused it, and
  // discarded the rest; which one caused it, it does not say.
  Outcome publish(AmqpConnection::Publish p, Clock::time_point deadline);

  // What became of a copy a consumer makes of a delivery before it acks
  // it (a retry, a dead letter): kStored, it may ack; kRefused, it never
  // will be stored (the broker nacked it: a queue at its length limit with
  // overflow reject-publish; or it could not be encoded): trying again
  // would loop; kUnknown: not known, so the original goes back.
  enum class Copy { kStored, kRefused, kUnknown };
  Copy copy(AmqpConnection::Publish p, Clock::time_point deadline) {
    switch (publish(std::move(p), deadline)) {
      case Outcome::kConfirmed: return Copy::kStored;
      case Outcome::kNacked:
      case Outcome::kNotSent: return Copy::kRefused;
      default: return Copy::kUnknown;
    }
  }

  // The longest a republish waits for its confirm.
  static constexpr std::chrono::seconds kRepublishWait{10};
  // The broker's reason for the last close of the event channel.
  const std::string& lost_reason() const { return lost_reason_; }

 private:
  struct Pending;
  void on_confirm(uint64_t tag, bool multiple, bool ack);
  void fail_all();

  BrokerLink& link_;
  std::map<uint64_t, Pending*> pending_;   // by delivery tag on the event channel
  std::string lost_reason_;
};

}  // namespace tern::detail
