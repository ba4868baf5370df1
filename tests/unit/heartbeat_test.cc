// tern's own heartbeat timekeeping (transport/amqp/heartbeat.h): what is
// due when, on a clock the test moves by hand.
#include <catch2/catch.hpp>

#include "transport/amqp/heartbeat.h"

using namespace std::chrono_literals;
using tern::detail::Heartbeat;
using Clock = Heartbeat::Clock;

TEST_CASE("a heartbeat is due after half the interval without writing, and writing puts it off") {
  const auto t0 = Clock::now();
  Heartbeat hb(2s, t0);
  CHECK_FALSE(hb.send_due(t0 + 999ms));
  CHECK(hb.send_due(t0 + 1s));
  CHECK(hb.next_due(true) == t0 + 1s);
  hb.sent(t0 + 900ms);
  CHECK_FALSE(hb.send_due(t0 + 1800ms));
  CHECK(hb.send_due(t0 + 1900ms));
  // Reading does not put it off: the broker wants bytes from us.
  hb.received(t0 + 1800ms);
  CHECK(hb.send_due(t0 + 1900ms));
}

TEST_CASE("half of an odd interval is not rounded to whole seconds") {
  const auto t0 = Clock::now();
  Heartbeat one(1s, t0), three(3s, t0);
  CHECK_FALSE(one.send_due(t0 + 499ms));
  CHECK(one.send_due(t0 + 500ms));
  CHECK_FALSE(three.send_due(t0 + 1499ms));
  CHECK(three.send_due(t0 + 1500ms));
}

TEST_CASE("the broker is dead after twice the interval without receiving, however much was written") {
  const auto t0 = Clock::now();
  Heartbeat hb(2s, t0);
  for (auto t = t0; t < t0 + 4s; t += 100ms) hb.sent(t);  // a backlog going out all along
  CHECK_FALSE(hb.dead(t0 + 3999ms));
  CHECK(hb.dead(t0 + 4s));
  CHECK(hb.silence(t0 + 4s) == 4s);
  hb.received(t0 + 3s);
  CHECK_FALSE(hb.dead(t0 + 6999ms));
  CHECK(hb.dead(t0 + 7s));
}

TEST_CASE("with output waiting only the broker's silence is due, so an idle thread sleeps until it") {
  const auto t0 = Clock::now();
  Heartbeat hb(10s, t0);
  CHECK(hb.next_due(true) == t0 + 5s);    // a heartbeat to send
  CHECK(hb.next_due(false) == t0 + 20s);  // nothing can be sent now: only the check
  hb.received(t0 + 8s);
  hb.sent(t0 + 8s);
  CHECK(hb.next_due(true) == t0 + 13s);
  CHECK(hb.next_due(false) == t0 + 28s);
}

TEST_CASE("heartbeats off: nothing is ever due") {
  const auto t0 = Clock::now();
  Heartbeat hb(0s, t0);
  CHECK_FALSE(hb.on());
  CHECK_FALSE(hb.send_due(t0 + 1000s));
  CHECK_FALSE(hb.dead(t0 + 1000s));
  CHECK(hb.next_due(true) == Clock::time_point::max());
}

TEST_CASE("a process that looks at its connection 2 intervals later than it was due slept through it") {
  const auto t0 = Clock::now();
  Heartbeat hb(2s, t0);
  // Idle: heartbeats come and go every second, so a look is due every second.
  for (auto t = t0; t < t0 + 10s; t += 1s) {
    CHECK_FALSE(hb.slept_through(t));
    hb.received(t);
    hb.sent(t);
    hb.looked(/*can_send=*/true);
  }
  // Frozen after the look at 9 s, due again at 10 s (SIGSTOP, a blocked
  // thread); the broker's heartbeats waiting in the socket change nothing.
  hb.received(t0 + 13s);
  CHECK_FALSE(hb.slept_through(t0 + 13999ms));
  CHECK(hb.slept_through(t0 + 14s));
  CHECK(hb.late(t0 + 14s) == 4s);
  // With output waiting, the next look is only due at the broker's silence
  // of 2 intervals: sleeping until then is not late.
  Heartbeat backlog(1s, t0);
  backlog.looked(/*can_send=*/false);
  CHECK_FALSE(backlog.slept_through(t0 + 2s));
  CHECK_FALSE(backlog.slept_through(t0 + 3999ms));
  CHECK(backlog.slept_through(t0 + 4s));
  Heartbeat off(0s, t0);
  CHECK_FALSE(off.slept_through(t0 + 1h));
}
