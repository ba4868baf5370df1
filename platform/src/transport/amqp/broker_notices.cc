// What the broker tells a running link about itself: that it blocks
// publishing (a memory or disk alarm), that it cancelled one of our
// consumers (its queue was deleted), that it closed a channel (a channel
// error). Each is handled without losing the connection where that can be
// done. Part of BrokerLink (broker_link.h).
#include <fmt/format.h>

#include "transport/amqp/async_declarer.h"
#include "transport/amqp/broker_link.h"
#include "observability/telemetry.h"
#include "tern/log.h"

namespace tern::detail {
namespace {
// Channel errors recovered without reconnecting, at most, per window.
constexpr int kMaxReopens = 5;
constexpr std::chrono::seconds kReopenWindow{10};
}  // namespace

std::string BrokerLink::blocked_reason() const {
  return fmt::format("the broker blocked publishing: {} (a resource alarm)", blocked_by_);
}

void BrokerLink::on_blocked(AmqpConnection& c, bool blocked, const std::string& reason) {
  if (&c != publisher_.get()) return;   // the consuming connection never publishes
  blocked_ = blocked;
  blocked_by_ = reason;
  if (blocked) log::warn("{}: {}: calls and events fail fast until it clears", options_.name, blocked_reason());
  else log::info("{}: the broker unblocked publishing ({} cleared)", options_.name, reason);
}

void BrokerLink::on_consumer_cancelled(AmqpConnection& c, const std::string& tag) {
  if (consume_cancelled_) return;   // stopping: nothing to put back
  AsyncDeclarer d(c);
  if (&c == consumer_.get() && topology::redeclare(d, spec_, tag)) {
    log::warn("{}: the broker cancelled consumer {} (its queue was deleted): declared it again, consuming",
              options_.name, tag);
    return;
  }
  c.fail_with(fmt::format("the broker cancelled consumer {} (its queue was deleted?)", tag));
}

void BrokerLink::on_channel_closed(AmqpConnection& c, amqp_channel_t ch, const std::string& why) {
  const auto now = Clock::now();
  if (now - reopen_window_ > kReopenWindow) {
    reopen_window_ = now;
    reopens_ = 0;
  }
  if (++reopens_ > kMaxReopens) {
    c.fail_with(fmt::format("{}; {} channel errors within {} s", why, reopens_, kReopenWindow.count()));
    return;
  }
  AsyncDeclarer d(c);
  if (&c == consumer_.get()) {
    // The broker requeued every delivery unacked on it: never ack those now.
    ++generation_;
    try {
      topology::consume_again(d, spec_, consuming_);
    } catch (const std::exception& e) {
      c.fail_with(fmt::format("{}; cannot consume again: {}", why, e.what()));
      return;
    }
    log::warn("{}: {}; opened it again and consuming (the deliveries in flight go back to their queues)",
              options_.name, why);
    return;
  }
  if (ch == AmqpConnection::kChannel) d.consume(topology::kReplyTo, topology::kReplyTag, /*no_ack=*/true);
  log::warn("{}: {}; opened it again", options_.name, why);
  for (auto& fn : on_channel_lost_) fn(ch, why);
}

}  // namespace tern::detail
