#include "rpc/client/resilience.h"

#include <algorithm>
#include <utility>

namespace tern::detail {

std::chrono::milliseconds backoff_delay(const Backoff& backoff, int retry, uint64_t random) {
  const uint64_t base = static_cast<uint64_t>(std::max<int64_t>(0, backoff.base.count()));
  const uint64_t cap = static_cast<uint64_t>(std::max<int64_t>(0, backoff.cap.count()));
  const int shift = std::max(retry, 1) - 1;
  uint64_t bound;
  if (base == 0) {
    bound = 0;
  } else if (shift >= 63 || base > (cap >> shift)) {
    bound = cap;  // base * 2^shift > cap
  } else {
    bound = base << shift;  // <= cap, so no overflow
  }
  // floor(random * (bound + 1) / 2^64): uniform in [0, bound]; bound + 1 fits
  // since bound <= INT64_MAX.
  const uint64_t delay =
      static_cast<uint64_t>((static_cast<unsigned __int128>(random) * (bound + 1)) >> 64);
  return std::chrono::milliseconds(static_cast<int64_t>(delay));
}

WindowCounter::WindowCounter(std::chrono::nanoseconds window, int buckets)
    : width_ns_(std::max<int64_t>(1, window.count() / std::max(buckets, 1))),
      ring_(static_cast<size_t>(std::max(buckets, 1))) {}

int64_t WindowCounter::index_of(SteadyTime now) const {
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  int64_t index = ns / width_ns_;
  if (ns % width_ns_ < 0) --index;  // floor for times before the clock's epoch
  if (latest_ && index < *latest_) index = *latest_;
  return index;
}

void WindowCounter::add(SteadyTime now, int64_t first, int64_t second) {
  const int64_t index = index_of(now);
  const int64_t n = static_cast<int64_t>(ring_.size());
  Bucket& bucket = ring_[static_cast<size_t>(((index % n) + n) % n)];
  if (bucket.index != index) bucket = Bucket{index, {}};  // a full ring ago, or never
  bucket.counts.first += first;
  bucket.counts.second += second;
  latest_ = index;
}

WindowCounter::Counts WindowCounter::sum(SteadyTime now) const {
  Counts total;
  if (!latest_) return total;
  const int64_t index = index_of(now);
  const int64_t oldest = index - static_cast<int64_t>(ring_.size()) + 1;
  for (const Bucket& bucket : ring_) {
    if (bucket.index >= oldest && bucket.index <= index) {
      total.first += bucket.counts.first;
      total.second += bucket.counts.second;
    }
  }
  return total;
}

void WindowCounter::clear() {
  for (Bucket& bucket : ring_) bucket = Bucket{};
  latest_.reset();
}

RetryBudget::RetryBudget(Options options)
    : options_(options),
      window_(options.window, 10),
      last_second_(std::chrono::seconds(1), 10) {}

void RetryBudget::record_call(TimePoint now) { window_.add(now, 1, 0); }

bool RetryBudget::try_spend_retry(TimePoint now) {
  const WindowCounter::Counts in_window = window_.sum(now);
  const int64_t recent = last_second_.sum(now).second;
  const bool allowed =
      recent < options_.min_retries_per_second ||
      static_cast<double>(in_window.second) < options_.ratio * static_cast<double>(in_window.first);
  if (!allowed) return false;
  window_.add(now, 0, 1);
  last_second_.add(now, 0, 1);
  return true;
}

CircuitBreaker::CircuitBreaker(Options options)
    : options_(options), window_(options.window, 10) {}

bool CircuitBreaker::allow(TimePoint now) {
  if (state_ == State::kOpen) {
    if (now - opened_at_ < options_.open_for) return false;
    move_to(State::kHalfOpen, now);
  }
  if (state_ == State::kHalfOpen) {
    if (probes_in_flight_ >= std::max(options_.half_open_probes, 1)) return false;
    ++probes_in_flight_;
  }
  return true;
}

void CircuitBreaker::record(bool success, TimePoint now) {
  switch (state_) {
    case State::kOpen:
      return;
    case State::kHalfOpen:
      if (probes_in_flight_ > 0) --probes_in_flight_;
      move_to(success ? State::kClosed : State::kOpen, now);
      return;
    case State::kClosed: {
      window_.add(now, success ? 1 : 0, success ? 0 : 1);
      const WindowCounter::Counts counts = window_.sum(now);
      const int64_t total = counts.first + counts.second;
      if (total >= std::max(options_.min_requests, 1) &&
          static_cast<double>(counts.second) >=
              options_.failure_ratio * static_cast<double>(total)) {
        move_to(State::kOpen, now);
      }
      return;
    }
  }
}

void CircuitBreaker::move_to(State to, TimePoint now) {
  if (to == state_) return;
  const Transition transition{state_, to};
  state_ = to;
  window_.clear();
  probes_in_flight_ = 0;
  if (to == State::kOpen) opened_at_ = now;
  if (pending_count_ == pending_.size()) {
    pending_head_ = (pending_head_ + 1) % pending_.size();  // drop the oldest
    --pending_count_;
  }
  pending_[(pending_head_ + pending_count_) % pending_.size()] = transition;
  ++pending_count_;
}

std::optional<CircuitBreaker::Transition> CircuitBreaker::take_transition() {
  if (pending_count_ == 0) return std::nullopt;
  const Transition transition = pending_[pending_head_];
  pending_head_ = (pending_head_ + 1) % pending_.size();
  --pending_count_;
  return transition;
}

std::string_view state_name(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed:
      return "closed";
    case CircuitBreaker::State::kOpen:
      return "open";
    case CircuitBreaker::State::kHalfOpen:
      return "half-open";
  }
  return "unknown";
}

CircuitBreakers::CircuitBreakers(CircuitBreaker::Options options) : options_(options) {}

CircuitBreakers::Lease CircuitBreakers::get(std::string_view service, std::string_view endpoint) {
  key_.assign(service);
  key_ += '/';
  key_ += endpoint;
  auto it = breakers_.find(key_);
  if (it == breakers_.end()) {
    if (breakers_.size() >= kMaxBreakers) forget_one();
    it = breakers_.try_emplace(key_, Entry{CircuitBreaker(options_)}).first;
  }
  it->second.used = ++clock_;
  return Lease(it->second);
}

void CircuitBreakers::forget_one() {
  // O(n), but only when a new name arrives with kMaxBreakers known. An open
  // or half-open breaker is protecting a sick downstream: kept.
  auto victim = breakers_.end();
  for (auto it = breakers_.begin(); it != breakers_.end(); ++it) {
    const Entry& e = it->second;
    if (e.leases > 0 || e.breaker.state() != CircuitBreaker::State::kClosed) continue;
    if (victim == breakers_.end() || e.used < victim->second.used) victim = it;
  }
  if (victim != breakers_.end()) breakers_.erase(victim);
}

}  // namespace tern::detail
