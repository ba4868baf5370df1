// The reactor on a thread of its own: fd waits wake on readiness, deadlines
// and cancel_waits; post() runs work from other threads on its thread.
#include <catch2/catch.hpp>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "runtime/reactor.h"

using namespace std::chrono_literals;
using tern::detail::Clock;
using tern::detail::Reactor;

namespace {
// Runs body as the main fiber of a reactor thread; returns when it does.
template <class F>
void on_reactor(Reactor& reactor, F body) {
  std::thread t([&] {
    reactor.attach();
    body();
    reactor.detach();
  });
  t.join();
}
}  // namespace

TEST_CASE("a fiber waiting on an fd wakes when it is readable, at its deadline, or when cancelled") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  Reactor reactor(64 * 1024);
  short readable = -1, timed_out = -1, cancelled = -1;
  Clock::duration cancel_took{};
  on_reactor(reactor, [&] {
    // Another thread writes once the fiber waits.
    std::thread writer([&] {
      std::this_thread::sleep_for(50ms);
      REQUIRE(write(fds[1], "x", 1) == 1);
    });
    readable = reactor.wait_fd(fds[0], POLLIN, Clock::now() + 10s);
    writer.join();
    char c;
    REQUIRE(read(fds[0], &c, 1) == 1);
    timed_out = reactor.wait_fd(fds[0], POLLIN, Clock::now() + 50ms);
    boost::fibers::fiber waiter([&] {
      const auto start = Clock::now();
      cancelled = reactor.wait_fd(fds[0], POLLIN, Clock::now() + 10s);
      cancel_took = Clock::now() - start;
    });
    boost::this_fiber::sleep_for(20ms);
    reactor.cancel_waits(fds[0]);
    waiter.join();
  });
  close(fds[0]);
  close(fds[1]);
  CHECK((readable & POLLIN) != 0);
  CHECK(timed_out == 0);
  CHECK(cancelled == 0);
  CHECK(cancel_took < 5s);   // ended by cancel_waits, not its 10 s deadline
}

TEST_CASE("work posted from another thread runs in a fiber on the reactor's thread") {
  Reactor reactor(64 * 1024);
  std::promise<std::thread::id> ran_on;
  std::thread::id reactor_thread;
  std::atomic<bool> done{false};
  on_reactor(reactor, [&] {
    reactor_thread = std::this_thread::get_id();
    std::thread poster([&] {
      reactor.post([&] {
        CHECK(Reactor::current() == &reactor);
        ran_on.set_value(std::this_thread::get_id());
        done = true;
      });
    });
    poster.join();
    // The main fiber parks; the posted fiber must run meanwhile.
    const auto give_up = Clock::now() + 10s;
    while (!done && Clock::now() < give_up) boost::this_fiber::sleep_for(1ms);
  });
  auto id = ran_on.get_future();
  REQUIRE(id.wait_for(0s) == std::future_status::ready);
  CHECK(id.get() == reactor_thread);
  CHECK(Reactor::current() == nullptr);   // on this, the test's thread
}

TEST_CASE("once the reactor stops, fd waits end at once") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  Reactor reactor(64 * 1024);
  short revents = -1;
  Clock::duration took{};
  on_reactor(reactor, [&] {
    std::thread stopper([&] {
      std::this_thread::sleep_for(50ms);
      reactor.stop();
    });
    const auto start = Clock::now();
    revents = reactor.wait_fd(fds[0], POLLIN, Clock::now() + 10s);
    took = Clock::now() - start;
    stopper.join();
  });
  close(fds[0]);
  close(fds[1]);
  CHECK(revents == 0);
  CHECK(took < 5s);
}
