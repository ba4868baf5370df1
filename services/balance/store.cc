#include "store.h"

#include <chrono>
#include <mutex>

namespace balance {

Store::Store(const std::string& path) : db_(path) {
  common::exec(db_.get(),
               "CREATE TABLE IF NOT EXISTS balances ("
               " account_id TEXT PRIMARY KEY, balance INTEGER NOT NULL, currency TEXT NOT NULL);"
               "CREATE TABLE IF NOT EXISTS applied ("
               " transaction_id TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
               " applied_unix_ms INTEGER NOT NULL)");
}

tern::Result<Store::Outcome> Store::apply(const transaction::Transaction& tx,
                                          std::string_view event_id) {
  std::lock_guard lock(mu_);
  tern::Result<Outcome> outcome = Outcome::kApplied;
  db_.transaction([&] {
    common::Statement(db_.get(),
                      "INSERT OR IGNORE INTO applied (transaction_id, event_id, applied_unix_ms)"
                      " VALUES (?, ?, ?)")
        .bind(1, tx.id())
        .bind(2, event_id)
        .bind(3, std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count())
        .step();
    if (common::changes(db_.get()) == 0) {
      outcome = Outcome::kDuplicate;
      return false;
    }
    int64_t balance = 0;
    common::Statement current(db_.get(),
                              "SELECT balance, currency FROM balances WHERE account_id = ?");
    current.bind(1, tx.account_id());
    if (current.step()) {
      if (current.text(1) != tx.currency()) {
        outcome = tern::Error{
            tern::Code::kFailedPrecondition,
            "account " + tx.account_id() + " holds " + current.text(1) + ", not " + tx.currency()};
        return false;
      }
      balance = current.int64(0);
    }
    if (__builtin_add_overflow(balance, tx.amount(), &balance)) {
      outcome =
          tern::Error{tern::Code::kOutOfRange, "balance of " + tx.account_id() + " would overflow"};
      return false;
    }
    common::Statement(db_.get(),
                      "INSERT INTO balances (account_id, balance, currency) VALUES (?, ?, ?)"
                      " ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance")
        .bind(1, tx.account_id())
        .bind(2, balance)
        .bind(3, tx.currency())
        .step();
    return true;
  });
  return outcome;
}

Balance Store::get(std::string_view account_id) {
  std::lock_guard lock(mu_);
  common::Statement s(db_.get(), "SELECT balance, currency FROM balances WHERE account_id = ?");
  s.bind(1, account_id);
  Balance b;
  if (s.step()) {
    b.set_balance(s.int64(0));
    b.set_currency(s.text(1));
  } else {
    b.set_currency(kDefaultCurrency);
  }
  return b;
}

}  // namespace balance
