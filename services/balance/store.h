// service.balance's SQLite database: a balance per account, and which
// transactions it already holds.
#pragma once

#include <tern/error.h>

#include <boost/fiber/mutex.hpp>
#include <string>
#include <string_view>

#include "balance.pb.h"
#include "common/sqlite.h"
#include "transaction.pb.h"

namespace balance {

// The currency of an account with no transactions yet.
inline constexpr const char* kDefaultCurrency = "GBP";

// Safe from every fiber and thread of the service: a fiber mutex
// serializes use of the connection; nothing under it suspends.
class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests). Throws
  // std::runtime_error if it cannot.
  explicit Store(const std::string& path);

  enum class Outcome { kApplied, kDuplicate };
  // Adds tx.amount to the balance of tx.account_id, once per tx.id: the id
  // is recorded (with `event_id`, for tracing) in the same local transaction
  // as the new balance, so a second delivery of the same transaction (the
  // broker's redelivery, a dead-letter replay, or the outbox publishing it
  // again under a new event id) changes nothing. FAILED_PRECONDITION if the
  // account holds another currency, OUT_OF_RANGE if the sum would overflow;
  // nothing is kept then. Throws std::runtime_error on a database error.
  tern::Result<Outcome> apply(const transaction::Transaction& tx, std::string_view event_id);

  // The account's balance; 0 in kDefaultCurrency if it has none.
  Balance get(std::string_view account_id);

 private:
  boost::fibers::mutex mu_;
  common::Database db_;
};

}  // namespace balance
