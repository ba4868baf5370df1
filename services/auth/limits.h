// Failed logins, counted per account and per client address: past a few in
// a window, logins for that key are refused for a while without the
// password being checked, so guessing is slow and a locked account cannot
// be probed. Per instance (nothing shared): N instances allow N times the
// attempts. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace auth {

struct LimitOptions {
  int max_failures = 5;                        // in one window
  std::chrono::milliseconds window{15 * 60 * 1000};   // failures older than this are forgotten
  size_t max_keys = 100000;                    // memory bound: past it, the oldest entries go
};

class FailedLogins {
 public:
  explicit FailedLogins(LimitOptions options = {}) : options_(options) {}

  // 0 if `key` may try now, else the milliseconds until it may.
  int64_t retry_after_ms(const std::string& key, int64_t now_ms);
  void failed(const std::string& key, int64_t now_ms);
  void succeeded(const std::string& key);

 private:
  struct Entry {
    int failures = 0;
    int64_t window_start_ms = 0;
  };
  void prune(int64_t now_ms);

  const LimitOptions options_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace auth
