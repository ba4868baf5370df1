// The AMQP heartbeat of one connection, as tern keeps it (rabbitmq-c's own
// is switched off once the connection is set up): when a heartbeat frame is
// due to go out, and when the broker's silence means the connection is
// dead. Pure timekeeping: the connection reports what it wrote and read and
// asks what is due.
//
// The rules (AMQP 0-9-1 section 4.2.7, as RabbitMQ applies them):
// - send a heartbeat frame when nothing was written for interval / 2;
// - the connection is dead once nothing at all was received for
//   2 x interval, however much output is waiting to be written;
// - and once this process itself looked at it 2 x interval later than it
//   was due to (stopped, or its thread blocked): it could send no heartbeat
//   meanwhile, so the broker has dropped the connection and requeued its
//   deliveries, and what it sent before must not be handled now.
#pragma once

#include <algorithm>
#include <chrono>

namespace tern::detail {

class Heartbeat {
 public:
  using Clock = std::chrono::steady_clock;

  // interval 0: heartbeats are off; nothing is ever due.
  Heartbeat(std::chrono::seconds interval, Clock::time_point now)
      : interval_(interval), last_sent_(now), last_received_(now), look_by_(now) {}

  bool on() const { return interval_.count() > 0; }
  std::chrono::seconds interval() const { return interval_; }

  // Bytes went out on the socket (any frame counts) / came in.
  void sent(Clock::time_point now) { last_sent_ = now; }
  void received(Clock::time_point now) { last_received_ = now; }

  // Nothing was written for interval / 2: a heartbeat frame should go out.
  bool send_due(Clock::time_point now) const { return on() && now >= send_at(); }
  // Nothing was received for 2 x interval.
  bool dead(Clock::time_point now) const { return on() && now >= dead_at(); }
  // After each look at the connection (a round of its IO fiber): the next
  // must come by next_due(can_send) at the latest.
  void looked(bool can_send) { look_by_ = next_due(can_send); }
  // This look comes 2 x interval later than it was due.
  bool slept_through(Clock::time_point now) const { return on() && now - look_by_ >= 2 * interval_; }
  Clock::duration late(Clock::time_point now) const { return now - look_by_; }
  // The broker's silence so far.
  Clock::duration silence(Clock::time_point now) const { return now - last_received_; }

  // The next moment send_due() or dead() can become true, whatever comes
  // in or goes out before; with `can_send` false (output is waiting, so no
  // heartbeat would go out now) only dead() counts. Clock::time_point::max()
  // when off.
  Clock::time_point next_due(bool can_send) const {
    if (!on()) return Clock::time_point::max();
    return can_send ? std::min(send_at(), dead_at()) : dead_at();
  }

 private:
  // In milliseconds: half of a 1 s or 3 s interval is not a whole second.
  Clock::time_point send_at() const { return last_sent_ + std::chrono::milliseconds(interval_) / 2; }
  Clock::time_point dead_at() const { return last_received_ + 2 * interval_; }

  std::chrono::seconds interval_;
  Clock::time_point last_sent_;
  Clock::time_point last_received_;
  Clock::time_point look_by_;
};

}  // namespace tern::detail
