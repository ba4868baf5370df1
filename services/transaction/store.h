// service.transaction's SQLite database: the transactions and, through
// tern::Outbox, the events that announce them.
#pragma once

#include <tern/context.h>
#include <tern/outbox.h>

#include <boost/fiber/mutex.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "transaction.pb.h"

namespace transaction {

// Safe to use from every fiber and thread of the service: one fiber mutex
// serializes all use of the connection (tern::Outbox is not thread-safe).
// relay() keeps it across the broker's confirms; that is a fiber mutex, so
// waiting fibers park, threads do not.
class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests). Throws
  // std::runtime_error if it cannot.
  explicit Store(const std::string& path);

  // Saves tx and its transaction.created event in one local transaction:
  // both or neither. Throws std::runtime_error on a database error.
  void create(const tern::Context& ctx, const Transaction& tx);
  // The account's transaction `id`; nullopt if there is none (or it is
  // another account's).
  std::optional<Transaction> get(std::string_view account_id, std::string_view id);

  // Publishes the events not yet confirmed (see tern::Outbox::relay) and
  // returns how many went out; from a tern fiber.
  int relay(const tern::Context& ctx);
  int pending();

 private:
  boost::fibers::mutex mu_;
  tern::Outbox outbox_;
};

}  // namespace transaction
