#include "tern/idempotency.h"

namespace tern {

IdempotencyStore::Entry MemoryIdempotencyStore::begin(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  evict(now);
  auto it = slots_.find(key);
  if (it != slots_.end()) return it->second.entry;
  slots_.emplace(key, Slot{Entry{State::kInProgress, {}}, now, order_.end()});
  return Entry{State::kNew, {}};
}

void MemoryIdempotencyStore::finish(const std::string& key, std::string reply) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(key);
  if (it == slots_.end() || it->second.entry.state != State::kInProgress) return;
  bytes_ += key.size() + reply.size();
  it->second.entry = Entry{State::kDone, std::move(reply)};
  it->second.at = std::chrono::steady_clock::now();
  it->second.order = order_.insert(order_.end(), key);
  evict(it->second.at);
}

void MemoryIdempotencyStore::abandon(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(key);
  if (it == slots_.end() || it->second.entry.state != State::kInProgress) return;
  slots_.erase(it);
}

size_t MemoryIdempotencyStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size();
}

size_t MemoryIdempotencyStore::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

void MemoryIdempotencyStore::evict(std::chrono::steady_clock::time_point now) {
  while (!order_.empty()) {
    auto it = slots_.find(order_.front());
    const bool expired = now - it->second.at > options_.window;
    if (!expired && order_.size() <= options_.capacity && bytes_ <= options_.max_bytes) break;
    bytes_ -= it->first.size() + it->second.entry.reply.size();
    slots_.erase(it);
    order_.pop_front();
  }
}

}  // namespace tern
