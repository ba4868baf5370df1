// service.balance's SQLite database: a balance per account, and which
// transactions it already holds.
#pragma once

#include <tern/context.h>
#include <tern/error.h>
#include <tern/inbox.h>

#include <string>
#include <string_view>

#include "balance.pb.h"
#include "common/sqlite.h"
#include "transaction.pb.h"

namespace balance {

// The currency of an account with no transactions yet.
inline constexpr const char* kDefaultCurrency = "GBP";

// Safe from every fiber and thread of the service, and from every
// instance sharing the file: tern::Inbox serializes its connection with a
// fiber mutex, and instances through SQLite's write lock.
class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests). Throws
  // std::runtime_error if it cannot.
  explicit Store(const std::string& path);

  enum class Outcome { kApplied, kDuplicate };
  // Adds tx.amount to the balance of tx.account_id, once per event and once
  // per transaction: the event's id (ctx.request_id(), through tern::Inbox)
  // and the transaction's id are recorded in the same local transaction as
  // the new balance, so a second delivery of the same event (the broker's
  // redelivery, a dead-letter replay, a relay repeated after a crash) or
  // the same transaction under another event id changes nothing.
  // FAILED_PRECONDITION if the account holds another currency, OUT_OF_RANGE
  // if the sum would overflow; nothing is kept then. UNAVAILABLE
  // (retryable) if another instance held the database past the deadline.
  // Throws std::runtime_error on a database error.
  tern::Result<Outcome> apply(const tern::Context& ctx, const transaction::Transaction& tx);

  // The account's balance; 0 in kDefaultCurrency if it has none.
  Balance get(std::string_view account_id);

 private:
  tern::Inbox inbox_;
};

}  // namespace balance
