// The reactor on a thread of its own: fd waits wake on readiness, deadlines
// and cancel_waits; post() runs work from other threads on its thread.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "core/current.h"
#include "runtime/reactor.h"
#include "tern/context.h"
#include "tern/testing.h"

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

TEST_CASE("two fibers waiting on one socket for reading and for writing each wake for their own") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  Reactor reactor(64 * 1024);
  short reader = -1, writer = -1;
  bool reader_woke_before_data = true;
  on_reactor(reactor, [&] {
    boost::fibers::fiber r([&] { reader = reactor.wait_fd(sv[0], POLLIN, Clock::now() + 10s); });
    boost::fibers::fiber w([&] { writer = reactor.wait_fd(sv[0], POLLOUT, Clock::now() + 10s); });
    w.join();   // writable at once
    boost::this_fiber::sleep_for(20ms);
    reader_woke_before_data = reader != -1;
    REQUIRE(write(sv[1], "x", 1) == 1);
    r.join();
  });
  close(sv[0]);
  close(sv[1]);
  CHECK(writer == POLLOUT);
  CHECK_FALSE(reader_woke_before_data);
  CHECK(reader == POLLIN);
}

TEST_CASE("of a thousand fds waited on, only those made readable wake") {
  constexpr int kPipes = 1000;
  std::vector<std::array<int, 2>> pipes(kPipes);
  for (auto& p : pipes) REQUIRE(pipe2(p.data(), O_NONBLOCK | O_CLOEXEC) == 0);
  Reactor reactor(16 * 1024);
  std::vector<short> revents(kPipes, -1);
  int woke = 0, woke_in_time = 0;
  on_reactor(reactor, [&] {
    for (int i = 0; i < kPipes; ++i)
      reactor.spawn([&, i] {
        revents[i] = reactor.wait_fd(pipes[i][0], POLLIN, Clock::now() + 10s);
        ++woke;
      });
    boost::this_fiber::sleep_for(20ms);   // all parked
    for (int i = 7; i < kPipes; i += 100) REQUIRE(write(pipes[i][1], "x", 1) == 1);
    const auto give_up = Clock::now() + 5s;
    while (woke < 10 && Clock::now() < give_up) boost::this_fiber::sleep_for(1ms);
    boost::this_fiber::sleep_for(20ms);   // room for any wrong wake
    woke_in_time = woke;
    for (auto& p : pipes) reactor.cancel_waits(p[0]);
    while (woke < kPipes) boost::this_fiber::sleep_for(1ms);
  });
  for (auto& p : pipes) {
    close(p[0]);
    close(p[1]);
  }
  CHECK(woke_in_time == 10);
  for (int i = 0; i < kPipes; ++i) {
    INFO("pipe " << i);
    CHECK(revents[i] == (i % 100 == 7 ? POLLIN : 0));
  }
}

TEST_CASE("an fd closed after a wait timed out and its number reused is watched afresh") {
  Reactor reactor(64 * 1024);
  short timed_out = -1, reused = -1;
  int first = -1, second = -1;
  on_reactor(reactor, [&] {
    int a[2];
    REQUIRE(pipe2(a, O_NONBLOCK) == 0);
    first = a[0];
    timed_out = reactor.wait_fd(a[0], POLLIN, Clock::now() + 20ms);
    close(a[0]);
    close(a[1]);
    int b[2];
    REQUIRE(pipe2(b, O_NONBLOCK) == 0);
    second = b[0];
    std::thread later([&] {
      std::this_thread::sleep_for(50ms);
      REQUIRE(write(b[1], "x", 1) == 1);
    });
    reused = reactor.wait_fd(b[0], POLLIN, Clock::now() + 10s);
    later.join();
    close(b[0]);
    close(b[1]);
  });
  REQUIRE(first == second);   // the premise: the kernel handed the number out again
  CHECK(timed_out == 0);
  CHECK(reused == POLLIN);
}

TEST_CASE("each fiber of a runtime thread sees its own current context, across switches and nested scopes") {
  Reactor reactor(64 * 1024);
  tern::testing::FakeTransport transport;
  const tern::Context a = tern::Context::with_timeout(1s), b = tern::Context::with_timeout(1s),
                      inner = tern::Context::with_timeout(1s);
  std::vector<std::string> seen;   // what each fiber saw after each switch
  on_reactor(reactor, [&] {
    tern::detail::set_thread_transport(&transport);
    CHECK(tern::Context::current() == nullptr);
    const auto fiber = [&](const tern::Context* mine, const char* name) {
      return [&, mine, name] {
        CHECK(tern::Context::current() == nullptr);   // a new fiber has none
        tern::detail::ScopedCurrent scope(mine);
        for (int i = 0; i < 3; ++i) {
          boost::this_fiber::yield();
          seen.push_back(std::string(name) + (tern::Context::current() == mine ? "=mine" : "=other"));
          {
            tern::detail::ScopedCurrent nested(&inner);
            boost::this_fiber::yield();
            seen.push_back(std::string(name) + (tern::Context::current() == &inner ? "=inner" : "=other"));
          }
          seen.push_back(std::string(name) + (tern::Context::current() == mine ? "=mine" : "=other"));
        }
      };
    };
    boost::fibers::fiber f1(fiber(&a, "a")), f2(fiber(&b, "b"));
    f1.join();
    f2.join();
    CHECK(tern::Context::current() == nullptr);
    tern::detail::set_thread_transport(nullptr);
  });
  REQUIRE(seen.size() == 18);
  for (const std::string& s : seen) CHECK(s.find("=other") == std::string::npos);
}
