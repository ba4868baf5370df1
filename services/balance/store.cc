#include "store.h"

#include <chrono>

namespace balance {

Store::Store(const std::string& path) : inbox_(path) {
  inbox_.read([](sqlite3* db) {
    common::exec(db,
                 "CREATE TABLE IF NOT EXISTS balances ("
                 " account_id TEXT PRIMARY KEY, balance INTEGER NOT NULL, currency TEXT NOT NULL);"
                 "CREATE TABLE IF NOT EXISTS applied ("
                 " transaction_id TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
                 " applied_unix_ms INTEGER NOT NULL)");
  });
}

tern::Result<Store::Outcome> Store::apply(const tern::Context& ctx, const transaction::Transaction& tx) {
  Outcome outcome = Outcome::kDuplicate;   // unless the function below applies it
  tern::Error e = inbox_.run_event(ctx, "transaction.created", [&](tern::InboxTransaction& t) -> tern::Error {
    sqlite3* db = t.db();
    common::Statement(db,
                      "INSERT OR IGNORE INTO applied (transaction_id, event_id, applied_unix_ms)"
                      " VALUES (?, ?, ?)")
        .bind(1, tx.id())
        .bind(2, ctx.request_id())
        .bind(3, std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count())
        .step();
    if (common::changes(db) == 0) return tern::ok();   // the same transaction, another event id
    int64_t balance = 0;
    common::Statement current(db, "SELECT balance, currency FROM balances WHERE account_id = ?");
    current.bind(1, tx.account_id());
    if (current.step()) {
      if (current.text(1) != tx.currency())
        return tern::Error{tern::Code::kFailedPrecondition,
                           "account " + tx.account_id() + " holds " + current.text(1) + ", not " + tx.currency()};
      balance = current.int64(0);
    }
    if (__builtin_add_overflow(balance, tx.amount(), &balance))
      return tern::Error{tern::Code::kOutOfRange, "balance of " + tx.account_id() + " would overflow"};
    common::Statement(db,
                      "INSERT INTO balances (account_id, balance, currency) VALUES (?, ?, ?)"
                      " ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance")
        .bind(1, tx.account_id())
        .bind(2, balance)
        .bind(3, tx.currency())
        .step();
    outcome = Outcome::kApplied;
    return tern::ok();
  });
  if (!e.ok()) return e;
  return outcome;
}

Balance Store::get(std::string_view account_id) {
  return inbox_.read([&](sqlite3* db) {
    common::Statement s(db, "SELECT balance, currency FROM balances WHERE account_id = ?");
    s.bind(1, account_id);
    Balance b;
    if (s.step()) {
      b.set_balance(s.int64(0));
      b.set_currency(s.text(1));
    } else {
      b.set_currency(kDefaultCurrency);
    }
    return b;
  });
}

}  // namespace balance
