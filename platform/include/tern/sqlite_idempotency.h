// An IdempotencyStore in an SQLite file that the instances of a service on
// one host share: a key begun by one instance is seen by all of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/fiber/mutex.hpp>

#include "tern/idempotency.h"

struct sqlite3;

namespace tern {

namespace detail {
class FiberBusyWait;
}  // namespace detail

struct SqliteIdempotencyOptions {
  std::chrono::milliseconds window{std::chrono::hours(24)};   // how long an answer is replayed
};

// svc.set_idempotency_store(std::make_shared<tern::SqliteIdempotencyStore>(path));
//
// What it closes and what it does not: a repeat of a key (a redelivery, a
// client's retry) on any instance sharing the file waits while the key is
// in progress elsewhere and then gets its answer, so the handler does not
// run twice while its first run is alive. A key whose owner process has
// died (checked by pid and start time: the instances share a host) is taken
// over and runs again: the key is recorded in its own transaction, apart
// from the handler's writes, so a crash after the handler's effect and
// before finish() leaves the effect without its answer. For effects in the
// same SQLite database, tern::Inbox records the key in the handler's own
// transaction and closes that window too.
//
// Thread-safe (a fiber mutex serializes its connection). Each call is one
// short transaction on local disk; waiting for another process's lock
// sleeps only the calling fiber, 5 s at most, then throws (the replay step
// answers UNAVAILABLE).
class SqliteIdempotencyStore final : public IdempotencyStore {
 public:
  using Options = SqliteIdempotencyOptions;
  // Opens or creates the database at `path` and its table tern_idempotency
  // (WAL journal). Throws std::runtime_error if it cannot.
  explicit SqliteIdempotencyStore(const std::string& path, Options options = {});
  ~SqliteIdempotencyStore() override;

  Entry begin(const std::string& key) override;
  void finish(const std::string& key, std::string reply) override;
  void abandon(const std::string& key) override;

  // Removes answers older than the window; returns how many.
  int expire();

 private:
  const Options options_;
  boost::fibers::mutex mu_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<detail::FiberBusyWait> busy_;
  const int64_t pid_;
  const int64_t start_;   // this process's start time, in clock ticks since boot
};

}  // namespace tern
