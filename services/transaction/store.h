// service.transaction's SQLite database: the transactions and, through
// tern::Inbox, the idempotency keys of the creates and the events that
// announce them (its outbox).
#pragma once

#include <tern/context.h>
#include <tern/error.h>
#include <tern/inbox.h>

#include <optional>
#include <string>
#include <string_view>

#include "transaction.pb.h"

namespace transaction {

// Safe to use from every fiber and thread of the service, and from every
// instance sharing the file: tern::Inbox serializes its connection with a
// fiber mutex, and instances through SQLite's write lock.
class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests). Throws
  // std::runtime_error if it cannot.
  explicit Store(const std::string& path);

  // Saves tx and its transaction.created event in one local transaction
  // with ctx's idempotency key, if it has one: all or nothing. A create
  // whose key was committed before (by this instance or another sharing
  // the file) saves nothing and returns the transaction saved then;
  // `request` (the serialized create request) must match that one's, or
  // the answer is INVALID_ARGUMENT. UNAVAILABLE (retryable) if another
  // instance held the database past the deadline. Throws
  // std::runtime_error on a database error.
  tern::Result<Transaction> create(const tern::Context& ctx, const Transaction& tx, std::string_view request);
  // The account's transaction `id`; nullopt if there is none (or it is
  // another account's).
  std::optional<Transaction> get(std::string_view account_id, std::string_view id);

  // Publishes the events not yet confirmed (see tern::Outbox::relay) and
  // returns how many went out; from a tern fiber.
  int relay(const tern::Context& ctx);
  int pending();
  // Forgets the idempotency keys of creates older than a week.
  int expire_keys();

 private:
  tern::Inbox inbox_;
};

}  // namespace transaction
