// A transactional outbox on SQLite: a service writes its own rows and the
// events they cause in one local transaction; relay() publishes the events
// with confirms and marks them sent. "Saved but the event never went out"
// cannot happen; a crash between commit and publish only delays the event.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <google/protobuf/message.h>

#include "tern/context.h"
#include "tern/error.h"

struct sqlite3;

namespace tern {

namespace detail {
class FiberBusyWait;
}  // namespace detail

// Not thread-safe: use one Outbox from one fiber at a time (a fiber mutex
// around it, as services/transaction does, or tern::Inbox, which is
// thread-safe). SQLite calls are local disk I/O and briefly block the
// thread; waiting for another process's write lock (instances sharing the
// file) sleeps only the calling fiber, 5 s at most.
class Outbox {
 public:
  // Opens or creates the database at `path` and its table tern_outbox.
  // Throws std::runtime_error if it cannot.
  explicit Outbox(const std::string& path);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // The database, for the service's own tables and statements.
  sqlite3* db() const { return db_; }

  // Runs fn inside one transaction (BEGIN IMMEDIATE ... COMMIT). fn writes
  // its rows through db() and queues events with add(); if it returns false
  // or throws, nothing of it (rows or events) is kept. Returns whether it
  // committed.
  // Throws std::runtime_error if another connection keeps the write lock
  // for 5 s.
  bool transaction(const std::function<bool()>& fn);

  // As transaction(), waiting for another connection's write lock until
  // `wait_until` at most (a request's deadline): kBusy if it did not get it,
  // and then fn did not run.
  enum class Outcome { kCommitted, kRolledBack, kBusy };
  Outcome transaction_until(std::chrono::steady_clock::time_point wait_until,
                            const std::function<bool()>& fn);

  // Within transaction(): queues `event` (routing key and envelope as
  // tern::publish would make them, ctx's trace). Its envelope id is fixed
  // here: a relay repeated after a crash sends the same id, so subscribers
  // deduplicating on it (tern::once_per_event) drop the repeat.
  void add(const Context& ctx, const google::protobuf::Message& event);

  // Publishes the events not yet sent, oldest first, each awaited on its
  // confirm, and deletes each row once confirmed. Call from a tern fiber
  // (a handler, Client::run). Returns how many it published; stops at the
  // first failure (the rest stay queued for the next call).
  int relay(const Context& ctx);

  // Events committed but not yet confirmed.
  int pending() const;

 private:
  void exec(const char* sql) const;
  void create_table() const;
  sqlite3* db_ = nullptr;
  std::unique_ptr<detail::FiberBusyWait> busy_;
  bool in_transaction_ = false;
};

}  // namespace tern
