// Replaying answers to repeated requests that carry an idempotency key.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace tern {

// Where a service keeps the answers to requests that carried an idempotency
// key. Called from every worker thread of the service: implementations must
// be thread-safe, and must not block for long (they run on fiber threads).
class IdempotencyStore {
 public:
  enum class State { kNew, kInProgress, kDone };
  struct Entry {
    State state = State::kNew;
    std::string reply;  // kDone: the serialized tern.v1.Response
  };
  virtual ~IdempotencyStore() = default;
  // Looks `key` up; if it is unknown, marks it in progress (the caller will
  // run the handler and then call finish or abandon) and returns kNew.
  virtual Entry begin(const std::string& key) = 0;
  // Stores the answer for a key begun with kNew.
  virtual void finish(const std::string& key, std::string reply) = 0;
  // Forgets a key begun with kNew whose outcome must not be replayed (a
  // retryable failure): the next attempt runs the handler again.
  virtual void abandon(const std::string& key) = 0;
};

struct MemoryIdempotencyOptions {
  size_t capacity = 10000;                    // answers kept; the oldest go first
  size_t max_bytes = 64 << 20;                // keys and answers kept, in bytes; the oldest go first
  std::chrono::milliseconds window{600000};   // how long an answer is replayed
};

// The default store: in memory, per process, bounded in answers, bytes and
// time. Keys still in progress are never evicted (their repeats must keep
// waiting, not run the handler again); they are bounded by the requests the
// process runs at once.
class MemoryIdempotencyStore final : public IdempotencyStore {
 public:
  using Options = MemoryIdempotencyOptions;
  explicit MemoryIdempotencyStore(Options options = {}) : options_(options) {}
  Entry begin(const std::string& key) override;
  void finish(const std::string& key, std::string reply) override;
  void abandon(const std::string& key) override;
  size_t size() const;
  size_t bytes() const;   // of the answers kept (keys and replies)

 private:
  struct Slot {
    Entry entry;
    std::chrono::steady_clock::time_point at;
    std::list<std::string>::iterator order;   // valid once done
  };
  void evict(std::chrono::steady_clock::time_point now);

  const Options options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> slots_;
  std::list<std::string> order_;  // the done keys, oldest first: the only ones evicted
  size_t bytes_ = 0;
};

}  // namespace tern
