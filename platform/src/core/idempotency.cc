#include "tern/idempotency.h"

namespace tern {

IdempotencyStore::Entry MemoryIdempotencyStore::begin(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  evict(now);
  auto it = slots_.find(key);
  if (it != slots_.end()) return it->second.entry;
  order_.push_back(key);
  slots_.emplace(key, Slot{Entry{State::kInProgress, {}}, now, std::prev(order_.end())});
  return Entry{State::kNew, {}};
}

void MemoryIdempotencyStore::finish(const std::string& key, std::string reply) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(key);
  if (it == slots_.end()) return;  // evicted meanwhile
  it->second.entry = Entry{State::kDone, std::move(reply)};
  it->second.at = std::chrono::steady_clock::now();
  order_.splice(order_.end(), order_, it->second.order);
}

void MemoryIdempotencyStore::abandon(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(key);
  if (it == slots_.end()) return;
  order_.erase(it->second.order);
  slots_.erase(it);
}

size_t MemoryIdempotencyStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size();
}

void MemoryIdempotencyStore::evict(std::chrono::steady_clock::time_point now) {
  while (!order_.empty()) {
    auto it = slots_.find(order_.front());
    const bool expired = now - it->second.at > options_.window;
    if (!expired && slots_.size() < options_.capacity) break;
    slots_.erase(it);
    order_.pop_front();
  }
}

}  // namespace tern
