#include "limits.h"

#include <algorithm>
#include <vector>

namespace auth {

int64_t FailedLogins::retry_after_ms(const std::string& key, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  const int64_t ends = it->second.window_start_ms + options_.window.count();
  if (now_ms >= ends) {
    entries_.erase(it);
    return 0;
  }
  return it->second.failures >= options_.max_failures ? ends - now_ms : 0;
}

void FailedLogins::failed(const std::string& key, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[key];
  if (e.failures == 0 || now_ms >= e.window_start_ms + options_.window.count()) e = Entry{0, now_ms};
  ++e.failures;
  if (entries_.size() > options_.max_keys) prune(now_ms);
}

void FailedLogins::succeeded(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(key);
}

void FailedLogins::prune(int64_t now_ms) {
  // Expired windows first; then, if still over, the oldest tenth.
  std::erase_if(entries_, [&](const auto& kv) { return now_ms >= kv.second.window_start_ms + options_.window.count(); });
  if (entries_.size() <= options_.max_keys) return;
  std::vector<int64_t> starts;
  starts.reserve(entries_.size());
  for (const auto& [k, e] : entries_) starts.push_back(e.window_start_ms);
  const size_t drop = entries_.size() - options_.max_keys + options_.max_keys / 10;
  std::nth_element(starts.begin(), starts.begin() + static_cast<std::ptrdiff_t>(drop - 1), starts.end());
  const int64_t cutoff = starts[drop - 1];
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.window_start_ms <= cutoff; });
}

}  // namespace auth
