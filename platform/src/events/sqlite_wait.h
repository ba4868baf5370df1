// Waiting for another connection's SQLite lock without stalling a thread's
// fibers. With sqlite3_busy_timeout a connection that finds the database
// locked (another process is in a write transaction) sleeps its whole
// thread; with this handler it sleeps only the calling fiber, in short
// steps, so the thread's other fibers (the broker connection, heartbeats,
// other requests) keep running. Boost.Fiber never moves a fiber between
// threads, so the connection's own mutex, held by SQLite across the
// handler, is released by the thread that took it.
//
// The connection must not be used by another fiber while one waits: its
// owner serializes use with a fiber mutex, as tern::Outbox's users and
// tern::Inbox do.
#pragma once

#include <chrono>

struct sqlite3;

namespace tern::detail {

class FiberBusyWait {
 public:
  using Clock = std::chrono::steady_clock;
  // Installs itself as db's busy handler; a statement gives up (SQLITE_BUSY)
  // after `budget` of waiting unless wait_until() says otherwise. Must
  // outlive the connection's use.
  FiberBusyWait(sqlite3* db, std::chrono::milliseconds budget);
  FiberBusyWait(const FiberBusyWait&) = delete;
  FiberBusyWait& operator=(const FiberBusyWait&) = delete;

  // Until reset(): a statement waits until `until` at most (a request's
  // deadline) instead of the budget.
  void wait_until(Clock::time_point until) { until_ = until; }
  void reset() { until_ = Clock::time_point{}; }

 private:
  static int on_busy(void* self, int count);

  const std::chrono::milliseconds budget_;
  Clock::time_point until_{};    // zero: the budget, from the first wait
  Clock::time_point started_{};  // of the current statement's wait
};

}  // namespace tern::detail
