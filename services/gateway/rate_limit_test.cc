#include <catch2/catch.hpp>

#include "rate_limit.h"

using gateway::RateLimit;
using gateway::RateLimiter;
using gateway::retry_after_seconds;
using namespace std::chrono_literals;

namespace {

// An arbitrary fixed start: the clock is whatever the test says.
const RateLimiter::Clock::time_point t0 = RateLimiter::Clock::time_point() + 1000h;

int served(RateLimiter& limiter, std::string_view key, int n, RateLimiter::Clock::time_point at) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += limiter.take(key, at) == RateLimiter::Clock::duration::zero();
  return ok;
}

}  // namespace

TEST_CASE("a full bucket serves its burst at once, then refuses") {
  RateLimiter limiter({.per_second = 10, .burst = 5});
  CHECK(served(limiter, "a", 5, t0) == 5);
  CHECK(limiter.take("a", t0) > 0s);
}

TEST_CASE("a bucket refills at the rate, never past the burst") {
  RateLimiter limiter({.per_second = 10, .burst = 5});
  served(limiter, "a", 5, t0);
  CHECK(served(limiter, "a", 10, t0 + 300ms) == 3);   // 0.3 s at 10/s
  CHECK(served(limiter, "a", 10, t0 + 1h) == 5);      // an hour idle: still only the burst
}

TEST_CASE("a refused take says how long until a token, and takes nothing") {
  RateLimiter limiter({.per_second = 2, .burst = 1});
  REQUIRE(limiter.take("a", t0) == 0s);
  CHECK(limiter.take("a", t0) == 500ms);
  CHECK(limiter.take("a", t0 + 250ms) == 250ms);     // the refusal above did not push it back
  CHECK(limiter.take("a", t0 + 500ms) == 0s);
}

TEST_CASE("Retry-After is the wait in whole seconds rounded up, at least 1") {
  CHECK(retry_after_seconds(1ns) == 1);
  CHECK(retry_after_seconds(1s) == 1);
  CHECK(retry_after_seconds(1001ms) == 2);
  RateLimiter slow({.per_second = 1, .burst = 1});
  slow.take("a", t0);
  CHECK(retry_after_seconds(slow.take("a", t0 + 100ms)) == 1);
}

TEST_CASE("keys have buckets of their own") {
  RateLimiter limiter({.per_second = 1, .burst = 2});
  CHECK(served(limiter, "127.0.0.1", 3, t0) == 2);
  CHECK(served(limiter, "127.0.0.2", 3, t0) == 2);
  CHECK(limiter.size() == 2);
}

TEST_CASE("past max_keys the least recently used bucket goes and comes back full") {
  RateLimiter limiter({.per_second = 1, .burst = 2, .max_keys = 3});
  served(limiter, "a", 2, t0);
  served(limiter, "b", 2, t0);
  served(limiter, "c", 2, t0);
  CHECK(served(limiter, "a", 1, t0) == 0);   // a is now the most recent; b the least
  served(limiter, "d", 1, t0);               // b goes
  CHECK(limiter.size() == 3);
  CHECK(served(limiter, "a", 1, t0) == 0);   // a, c and d kept their empty buckets
  CHECK(served(limiter, "c", 1, t0) == 0);
  CHECK(served(limiter, "b", 2, t0) == 2);   // b is back, full (and c goes)
  CHECK(limiter.size() == 3);
}

TEST_CASE("rotating keys never grows the table past max_keys") {
  RateLimiter limiter({.per_second = 1, .burst = 1, .max_keys = 1000});
  for (int i = 0; i < 20000; ++i) limiter.take("10.0." + std::to_string(i), t0);
  CHECK(limiter.size() == 1000);
}

TEST_CASE("a rate of 0 is no limit and keeps no buckets") {
  RateLimiter limiter({.per_second = 0, .burst = 0});
  CHECK_FALSE(limiter.enabled());
  CHECK(served(limiter, "a", 10000, t0) == 10000);
  CHECK(limiter.size() == 0);
}
