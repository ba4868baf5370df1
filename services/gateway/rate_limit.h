// Token buckets by key (a client address, an account): each key may make
// `per_second` requests a second on average and `burst` at once. Plain
// logic, the clock passed in: unit-tested in rate_limit_test.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gateway {

struct RateLimit {
  int64_t per_second = 0;        // 0: no limit
  int64_t burst = 0;             // tokens a full bucket holds, at least 1 when per_second is set
  size_t max_keys = 100000;      // buckets kept; past it the least recently used goes
};

// One table of buckets for the whole process, so the limit is what it says
// whichever loop thread a connection landed on. Thread-safe: a std::mutex
// held only for the O(1) update of one bucket (no fiber switch, no call
// while held). A key evicted from the table, or unseen, starts full: an
// address or token rotated past max_keys costs a client nothing it could
// not have had, and the table never outgrows max_keys.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RateLimiter(RateLimit limit);

  bool enabled() const { return limit_.per_second > 0; }

  // Takes a token from key's bucket at `now`: zero if there was one (go
  // ahead), else how long until one is there (refused; nothing taken).
  // Always zero when not enabled.
  Clock::duration take(std::string_view key, Clock::time_point now);

  size_t size() const;

 private:
  struct Bucket {
    std::string key;
    double tokens;
    Clock::time_point at;   // when `tokens` was right
  };

  const RateLimit limit_;
  mutable std::mutex mu_;
  std::list<Bucket> lru_;   // most recently used first
  // Keys are views of the Bucket's own key (list nodes do not move).
  std::unordered_map<std::string_view, std::list<Bucket>::iterator> index_;
};

// A Retry-After header's value for a wait: whole seconds, rounded up, at
// least 1.
int64_t retry_after_seconds(RateLimiter::Clock::duration wait);

}  // namespace gateway
