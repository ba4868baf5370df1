// Retry and overload policy for calls between services: backoff with full
// jitter, a per-client retry budget, and per-downstream circuit breakers.
// Pure logic: time and randomness are passed in, nothing here does I/O or
// starts threads. None of these classes is thread-safe: each instance is
// owned and used by exactly one runtime thread.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tern::detail {

using SteadyTime = std::chrono::steady_clock::time_point;

struct Backoff {
  std::chrono::milliseconds base{25};  // bound of the first retry's delay
  std::chrono::milliseconds cap{1000};  // no delay bound grows past this
};

// The delay before retry number `retry` (1 for the first retry): uniform in
// [0, min(cap, base * 2^(retry-1))] ("full jitter"), drawn from `random`, a
// uniformly random 64-bit number the caller supplies. random 0 gives 0 and
// random UINT64_MAX gives the bound. Integer arithmetic only; any retry
// number is safe (below 1 counts as 1, huge ones give the cap). Negative
// base or cap count as 0.
std::chrono::milliseconds backoff_delay(const Backoff& backoff, int retry, uint64_t random);

// Two counts over a sliding time window kept in a fixed ring of buckets, so
// memory does not grow with traffic. The window is exact to a bucket: sums
// cover the current bucket and the buckets - 1 before it. Time that goes
// backwards counts as the latest time seen.
class WindowCounter {
 public:
  struct Counts {
    int64_t first = 0;
    int64_t second = 0;
  };

  // Buckets of width window / buckets (at least 1 ns); buckets at least 1.
  WindowCounter(std::chrono::nanoseconds window, int buckets);

  void add(SteadyTime now, int64_t first, int64_t second);
  // The totals over the window that ends at now.
  Counts sum(SteadyTime now) const;
  void clear();

 private:
  struct Bucket {
    int64_t index = 0;
    Counts counts;
  };

  int64_t index_of(SteadyTime now) const;

  int64_t width_ns_;
  std::vector<Bucket> ring_;
  std::optional<int64_t> latest_;  // the highest bucket index added to
};

struct RetryBudgetOptions {
  // Retries allowed per call over the window: 0.1 keeps retries to 10% of
  // the load, so a struggling downstream sees at most 1.1x its traffic.
  double ratio = 0.1;
  std::chrono::milliseconds window{10000};
  // Retries allowed in any second whatever the ratio, so a quiet client can
  // still retry.
  int min_retries_per_second = 10;
};

// Limits the retries of one client, as gRPC and Finagle retry budgets do. A
// retry is allowed while the retries in the window stay under ratio times the
// calls in the window, or while fewer than min_retries_per_second retries
// were spent in the last second. Not thread-safe: one per runtime thread.
class RetryBudget {
 public:
  using Options = RetryBudgetOptions;
  using TimePoint = SteadyTime;

  explicit RetryBudget(Options options = {});

  // Counts a call's first attempt; retries are counted by try_spend_retry.
  void record_call(TimePoint now);
  // True, and counts the retry, if the budget allows one more retry now;
  // false means do not retry (return the last error to the caller).
  bool try_spend_retry(TimePoint now);

  const Options& options() const { return options_; }

 private:
  Options options_;
  WindowCounter window_;       // first: calls, second: retries
  WindowCounter last_second_;  // second: retries
};

struct CircuitBreakerOptions {
  std::chrono::milliseconds window{10000};  // outcomes counted over this, in 10 buckets
  int min_requests = 20;                    // outcomes in the window before it may open
  double failure_ratio = 0.5;               // opens when failures >= this share of outcomes
  std::chrono::milliseconds open_for{5000};  // fails fast this long, then half-opens
  int half_open_probes = 1;                 // calls allowed at once while half-open
};

// The health of one downstream (service, endpoint) as seen by one client.
// Closed: every call is allowed and its outcome counted. Open: calls fail
// fast until open_for has passed, then the next allow() half-opens it.
// Half-open: up to half_open_probes calls at once are allowed; the first
// probe to succeed closes it, a probe that fails opens it again.
// Contract: call record() exactly once for each call allow() let through,
// with success false only for failures that say the downstream is unhealthy
// (the caller decides which codes those are). Outcomes recorded while open
// are ignored. Not thread-safe: one per runtime thread.
class CircuitBreaker {
 public:
  using Options = CircuitBreakerOptions;
  using TimePoint = SteadyTime;

  enum class State { kClosed, kOpen, kHalfOpen };

  struct Transition {
    State from = State::kClosed;
    State to = State::kClosed;
    bool operator==(const Transition&) const = default;
  };

  // Transitions not yet taken beyond this many drop the oldest.
  static constexpr size_t kMaxPendingTransitions = 8;

  explicit CircuitBreaker(Options options = {});

  // False: fail fast without calling the downstream. May move open to
  // half-open (when open_for has passed).
  bool allow(TimePoint now);
  void record(bool success, TimePoint now);
  // The state as of the last allow() or record(): an open breaker whose
  // open_for has passed reports kOpen until the next allow().
  State state() const { return state_; }
  // The oldest state change not yet taken, each reported once, so the caller
  // can log it; nullopt when there is none.
  std::optional<Transition> take_transition();

  const Options& options() const { return options_; }

 private:
  void move_to(State to, TimePoint now);

  Options options_;
  State state_ = State::kClosed;
  WindowCounter window_;  // first: successes, second: failures
  TimePoint opened_at_{};
  int probes_in_flight_ = 0;
  std::array<Transition, kMaxPendingTransitions> pending_{};
  size_t pending_head_ = 0;
  size_t pending_count_ = 0;
};

// "closed", "open", "half-open".
std::string_view state_name(CircuitBreaker::State state);

// The circuit breakers of one client, one per "service/endpoint", created on
// first use with shared options. At most kMaxBreakers idle ones are kept
// (names can come from outside: a gateway request naming any service):
// making one more first forgets the least recently used closed breaker no
// call holds. A Lease keeps its breaker alive while a call uses it. Not
// thread-safe: one per runtime thread.
class CircuitBreakers {
 public:
  static constexpr size_t kMaxBreakers = 1000;
  explicit CircuitBreakers(CircuitBreaker::Options options = {});

  struct Entry {
    CircuitBreaker breaker;
    int leases = 0;
    uint64_t used = 0;   // when last leased, in lease order
  };
  class Lease {
   public:
    explicit Lease(Entry& e) : e_(e) { ++e_.leases; }
    ~Lease() { --e_.leases; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    CircuitBreaker& operator*() const { return e_.breaker; }
    CircuitBreaker* operator->() const { return &e_.breaker; }

   private:
    Entry& e_;
  };
  Lease get(std::string_view service, std::string_view endpoint);
  size_t size() const { return breakers_.size(); }

 private:
  void forget_one();
  CircuitBreaker::Options options_;
  std::unordered_map<std::string, Entry> breakers_;   // node-based: entries never move
  uint64_t clock_ = 0;
  std::string key_;  // reused to build keys without allocating per call
};

}  // namespace tern::detail
