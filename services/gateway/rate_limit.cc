#include "rate_limit.h"

#include <algorithm>
#include <cmath>

namespace gateway {

RateLimiter::RateLimiter(RateLimit limit) : limit_(limit) {}

RateLimiter::Clock::duration RateLimiter::take(std::string_view key, Clock::time_point now) {
  if (!enabled()) return Clock::duration::zero();
  const double burst = static_cast<double>(limit_.burst);
  std::lock_guard<std::mutex> lock(mu_);
  Bucket* b;
  if (auto it = index_.find(key); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    b = &*it->second;
    const double elapsed = std::chrono::duration<double>(now - b->at).count();
    if (elapsed > 0) {
      b->tokens = std::min(burst, b->tokens + elapsed * static_cast<double>(limit_.per_second));
      b->at = now;
    }
  } else {
    if (lru_.size() >= std::max<size_t>(limit_.max_keys, 1)) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
    }
    lru_.push_front(Bucket{std::string(key), burst, now});
    index_.emplace(lru_.front().key, lru_.begin());
    b = &lru_.front();
  }
  if (b->tokens >= 1) {
    b->tokens -= 1;
    return Clock::duration::zero();
  }
  const double wait_s = (1 - b->tokens) / static_cast<double>(limit_.per_second);
  return std::max(Clock::duration(1),
                  std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(wait_s)));
}

size_t RateLimiter::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

int64_t retry_after_seconds(RateLimiter::Clock::duration wait) {
  return std::max<int64_t>(1, std::chrono::ceil<std::chrono::seconds>(wait).count());
}

}  // namespace gateway
