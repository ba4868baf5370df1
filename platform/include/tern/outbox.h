// A transactional outbox on SQLite: a service writes its own rows and the
// events they cause in one local transaction; relay() publishes the events
// with confirms and marks them sent. "Saved but the event never went out"
// cannot happen; a crash between commit and publish only delays the event.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <google/protobuf/message.h>

#include "tern/context.h"
#include "tern/error.h"

struct sqlite3;

namespace tern {

// Not thread-safe: use one Outbox from one thread (a loop's fibers) at a
// time. SQLite calls are local disk I/O and briefly block the thread.
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
  bool transaction(const std::function<bool()>& fn);

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
  sqlite3* db_ = nullptr;
  bool in_transaction_ = false;
};

}  // namespace tern
