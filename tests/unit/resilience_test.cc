#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

#include "rpc/client/resilience.h"

using namespace std::chrono_literals;
using tern::detail::Backoff;
using tern::detail::backoff_delay;
using tern::detail::CircuitBreaker;
using tern::detail::CircuitBreakers;
using tern::detail::RetryBudget;
using State = CircuitBreaker::State;
using Transition = CircuitBreaker::Transition;

namespace {

constexpr uint64_t kMaxRandom = std::numeric_limits<uint64_t>::max();

// An arbitrary steady-clock time far from the clock's epoch.
const std::chrono::steady_clock::time_point kT0 = std::chrono::steady_clock::time_point{} + 1000h;

}  // namespace

TEST_CASE("backoff bounds double from base and stop at the cap") {
  const Backoff backoff{25ms, 1000ms};
  CHECK(backoff_delay(backoff, 1, kMaxRandom) == 25ms);
  CHECK(backoff_delay(backoff, 2, kMaxRandom) == 50ms);
  CHECK(backoff_delay(backoff, 3, kMaxRandom) == 100ms);
  CHECK(backoff_delay(backoff, 6, kMaxRandom) == 800ms);
  CHECK(backoff_delay(backoff, 7, kMaxRandom) == 1000ms);
  CHECK(backoff_delay(backoff, 8, kMaxRandom) == 1000ms);
  CHECK(backoff_delay(Backoff{}, 1, kMaxRandom) == 25ms);
  CHECK(backoff_delay(Backoff{}, 10, kMaxRandom) == 1000ms);
}

TEST_CASE("backoff with zero random is no delay and with the max random is the bound") {
  const Backoff backoff{25ms, 1000ms};
  for (int retry = 1; retry <= 20; ++retry) CHECK(backoff_delay(backoff, retry, 0) == 0ms);
  CHECK(backoff_delay(backoff, 4, kMaxRandom) == 200ms);
  CHECK(backoff_delay(Backoff{0ms, 1000ms}, 5, kMaxRandom) == 0ms);
  CHECK(backoff_delay(Backoff{25ms, 0ms}, 5, kMaxRandom) == 0ms);
}

TEST_CASE("backoff jitter spreads over the whole range") {
  const Backoff backoff{100ms, 1000ms};
  CHECK(backoff_delay(backoff, 1, kMaxRandom / 2) == 50ms);
  CHECK(backoff_delay(backoff, 1, kMaxRandom / 4) == 25ms);
  uint64_t x = 0x9e3779b97f4a7c15ULL;  // splitmix-style sequence; deterministic
  bool low = false, high = false;
  for (int i = 0; i < 1000; ++i) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    const auto delay = backoff_delay(backoff, 3, z);
    REQUIRE(delay >= 0ms);
    REQUIRE(delay <= 400ms);
    low = low || delay < 40ms;
    high = high || delay > 360ms;
  }
  CHECK(low);
  CHECK(high);
}

TEST_CASE("backoff for huge or nonsensical retry numbers stays at the cap") {
  const Backoff backoff{25ms, 1000ms};
  for (int retry : {31, 32, 63, 64, 65, 1000, std::numeric_limits<int>::max()})
    CHECK(backoff_delay(backoff, retry, kMaxRandom) == 1000ms);
  CHECK(backoff_delay(backoff, 0, kMaxRandom) == 25ms);
  CHECK(backoff_delay(backoff, -5, kMaxRandom) == 25ms);
  const Backoff huge{std::chrono::milliseconds::max(), std::chrono::milliseconds::max()};
  CHECK(backoff_delay(huge, std::numeric_limits<int>::max(), kMaxRandom) ==
        std::chrono::milliseconds::max());
  CHECK(backoff_delay(huge, 2, 0) == 0ms);
}

TEST_CASE("retry budget allows the floor to an idle client") {
  RetryBudget budget;
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += budget.try_spend_retry(kT0) ? 1 : 0;
  CHECK(allowed == 10);
  // Another second: another floor's worth.
  allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += budget.try_spend_retry(kT0 + 1100ms) ? 1 : 0;
  CHECK(allowed == 10);
}

TEST_CASE("retry budget limits retries to the ratio of calls under load") {
  RetryBudget budget;
  for (int i = 0; i < 1000; ++i) budget.record_call(kT0 + std::chrono::microseconds(i * 900));
  int allowed = 0;
  for (int i = 0; i < 500; ++i) allowed += budget.try_spend_retry(kT0 + 900ms) ? 1 : 0;
  CHECK(allowed == 100);
}

TEST_CASE("retry budget recovers as the window slides") {
  RetryBudget budget;
  for (int i = 0; i < 1000; ++i) budget.record_call(kT0);
  int allowed = 0;
  for (int i = 0; i < 500; ++i) allowed += budget.try_spend_retry(kT0) ? 1 : 0;
  REQUIRE(allowed == 100);
  CHECK_FALSE(budget.try_spend_retry(kT0 + 500ms));

  // A second later only the floor is available: the window is spent.
  allowed = 0;
  for (int i = 0; i < 500; ++i) allowed += budget.try_spend_retry(kT0 + 1500ms) ? 1 : 0;
  CHECK(allowed == 10);

  // More calls within the window earn more retries.
  for (int i = 0; i < 1000; ++i) budget.record_call(kT0 + 3s);
  allowed = 0;
  for (int i = 0; i < 500; ++i) allowed += budget.try_spend_retry(kT0 + 3s) ? 1 : 0;
  CHECK(allowed == 90);  // 2000 calls allow 200; 110 were spent

  // Once the window has slid past the old calls and retries, new load
  // earns the full ratio again.
  for (int i = 0; i < 1000; ++i) budget.record_call(kT0 + 14s);
  allowed = 0;
  for (int i = 0; i < 500; ++i) allowed += budget.try_spend_retry(kT0 + 14s) ? 1 : 0;
  CHECK(allowed == 100);
}

TEST_CASE("retry budget honors its options") {
  RetryBudget budget(RetryBudget::Options{.ratio = 0.5, .window = 2s, .min_retries_per_second = 0});
  CHECK_FALSE(budget.try_spend_retry(kT0));
  for (int i = 0; i < 10; ++i) budget.record_call(kT0);
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += budget.try_spend_retry(kT0) ? 1 : 0;
  CHECK(allowed == 5);
  CHECK_FALSE(budget.try_spend_retry(kT0 + 2500ms));
}

namespace {

void record_n(CircuitBreaker& breaker, int n, bool success, std::chrono::steady_clock::time_point t) {
  for (int i = 0; i < n; ++i) {
    REQUIRE(breaker.allow(t));
    breaker.record(success, t);
  }
}

// Opens a default breaker at kT0 and takes the closed to open transition.
void open_breaker(CircuitBreaker& breaker) {
  record_n(breaker, 20, false, kT0);
  REQUIRE(breaker.state() == State::kOpen);
  REQUIRE(breaker.take_transition() == Transition{State::kClosed, State::kOpen});
}

}  // namespace

TEST_CASE("circuit breaker stays closed below min requests") {
  CircuitBreaker breaker;
  record_n(breaker, 19, false, kT0);
  CHECK(breaker.state() == State::kClosed);
  CHECK(breaker.allow(kT0));
  CHECK_FALSE(breaker.take_transition());
}

TEST_CASE("circuit breaker opens at the failure ratio") {
  CircuitBreaker breaker;
  record_n(breaker, 10, true, kT0);
  record_n(breaker, 9, false, kT0 + 1s);
  CHECK(breaker.state() == State::kClosed);
  breaker.allow(kT0 + 2s);
  breaker.record(false, kT0 + 2s);  // 10 of 20
  CHECK(breaker.state() == State::kOpen);
  CHECK(breaker.take_transition() == Transition{State::kClosed, State::kOpen});
  CHECK_FALSE(breaker.take_transition());
}

TEST_CASE("circuit breaker stays closed under the failure ratio") {
  CircuitBreaker breaker;
  for (int i = 0; i < 100; ++i) {
    record_n(breaker, 3, true, kT0 + i * 100ms);
    record_n(breaker, 2, false, kT0 + i * 100ms);
  }
  CHECK(breaker.state() == State::kClosed);
}

TEST_CASE("circuit breaker forgets failures older than the window") {
  CircuitBreaker breaker;
  record_n(breaker, 15, false, kT0);
  record_n(breaker, 15, false, kT0 + 11s);
  CHECK(breaker.state() == State::kClosed);
  record_n(breaker, 5, false, kT0 + 12s);
  CHECK(breaker.state() == State::kOpen);
}

TEST_CASE("circuit breaker fails fast while open") {
  CircuitBreaker breaker;
  open_breaker(breaker);
  CHECK_FALSE(breaker.allow(kT0));
  CHECK_FALSE(breaker.allow(kT0 + 4999ms));
  breaker.record(true, kT0 + 1s);  // a late outcome from before it opened
  CHECK(breaker.state() == State::kOpen);
  CHECK_FALSE(breaker.take_transition());
}

TEST_CASE("circuit breaker half-opens after open_for and allows only the probe") {
  CircuitBreaker breaker;
  open_breaker(breaker);
  CHECK(breaker.state() == State::kOpen);  // state moves on allow() only
  CHECK(breaker.allow(kT0 + 5s));
  CHECK(breaker.state() == State::kHalfOpen);
  CHECK(breaker.take_transition() == Transition{State::kOpen, State::kHalfOpen});
  CHECK_FALSE(breaker.allow(kT0 + 5s));
  CHECK_FALSE(breaker.allow(kT0 + 6s));
  CHECK_FALSE(breaker.take_transition());
}

TEST_CASE("circuit breaker closes when the probe succeeds") {
  CircuitBreaker breaker;
  open_breaker(breaker);
  REQUIRE(breaker.allow(kT0 + 5s));
  breaker.record(true, kT0 + 5100ms);
  CHECK(breaker.state() == State::kClosed);
  CHECK(breaker.take_transition() == Transition{State::kOpen, State::kHalfOpen});
  CHECK(breaker.take_transition() == Transition{State::kHalfOpen, State::kClosed});
  CHECK_FALSE(breaker.take_transition());
  // Closed afresh: the old failures no longer count.
  record_n(breaker, 19, false, kT0 + 5200ms);
  CHECK(breaker.state() == State::kClosed);
}

TEST_CASE("circuit breaker reopens when the probe fails") {
  CircuitBreaker breaker;
  open_breaker(breaker);
  REQUIRE(breaker.allow(kT0 + 6s));
  breaker.record(false, kT0 + 6500ms);
  CHECK(breaker.state() == State::kOpen);
  CHECK(breaker.take_transition() == Transition{State::kOpen, State::kHalfOpen});
  CHECK(breaker.take_transition() == Transition{State::kHalfOpen, State::kOpen});
  CHECK_FALSE(breaker.take_transition());
  // open_for counts from the reopening.
  CHECK_FALSE(breaker.allow(kT0 + 11s));
  CHECK(breaker.allow(kT0 + 11500ms));
  CHECK(breaker.state() == State::kHalfOpen);
}

TEST_CASE("circuit breaker allows as many concurrent probes as configured") {
  CircuitBreaker breaker(CircuitBreaker::Options{.min_requests = 4, .half_open_probes = 3});
  record_n(breaker, 4, false, kT0);
  REQUIRE(breaker.state() == State::kOpen);
  CHECK(breaker.allow(kT0 + 5s));
  CHECK(breaker.allow(kT0 + 5s));
  CHECK(breaker.allow(kT0 + 5s));
  CHECK_FALSE(breaker.allow(kT0 + 5s));
  breaker.record(true, kT0 + 5s);
  CHECK(breaker.state() == State::kClosed);
}

TEST_CASE("circuit breaker keeps only the latest transitions when none are taken") {
  CircuitBreaker breaker(CircuitBreaker::Options{.min_requests = 1});
  record_n(breaker, 1, false, kT0);
  auto t = kT0;
  for (int i = 0; i < 10; ++i) {  // 20 more transitions: half-open then open again
    t += 5s;
    REQUIRE(breaker.allow(t));
    breaker.record(false, t);
  }
  REQUIRE(breaker.state() == State::kOpen);
  int taken = 0;
  while (breaker.take_transition()) ++taken;
  CHECK(taken == static_cast<int>(CircuitBreaker::kMaxPendingTransitions));
}

TEST_CASE("circuit breaker states have names") {
  CHECK(tern::detail::state_name(State::kClosed) == "closed");
  CHECK(tern::detail::state_name(State::kOpen) == "open");
  CHECK(tern::detail::state_name(State::kHalfOpen) == "half-open");
}

TEST_CASE("circuit breakers keep one breaker per service and endpoint") {
  CircuitBreakers breakers(CircuitBreaker::Options{.min_requests = 2});
  const CircuitBreakers::Lease la = breakers.get("service.a", "get");
  CircuitBreaker& a = *la;
  CHECK(&*breakers.get("service.a", "get") == &a);
  const CircuitBreakers::Lease lb = breakers.get("service.a", "put");
  CircuitBreaker& b = *lb;
  CHECK(&b != &a);
  CHECK(&*breakers.get("service.a/get", "") != &a);
  CHECK(breakers.size() == 3);
  for (int i = 0; i < 50; ++i) breakers.get("service.x", std::to_string(i));
  CHECK(&*breakers.get("service.a", "get") == &a);  // stable across rehashing
  record_n(a, 2, false, kT0);
  CHECK(a.state() == State::kOpen);
  CHECK(b.state() == State::kClosed);
  CHECK(a.options().min_requests == 2);
}

TEST_CASE("circuit breakers stay bounded: names from outside evict idle closed ones, never open or leased ones") {
  CircuitBreakers breakers(CircuitBreaker::Options{.min_requests = 2});
  {
    auto sick = breakers.get("service.sick", "get");
    record_n(*sick, 2, false, kT0);
    REQUIRE(sick->state() == State::kOpen);
  }
  const CircuitBreakers::Lease held = breakers.get("service.busy", "get");
  CircuitBreaker* busy = &*held;
  for (int i = 0; i < 5000; ++i) breakers.get("service.random" + std::to_string(i), "get");
  CHECK(breakers.size() <= CircuitBreakers::kMaxBreakers);
  CHECK(breakers.get("service.sick", "get")->state() == State::kOpen);   // still protecting
  CHECK(&*breakers.get("service.busy", "get") == busy);                  // a call holds it
}
