#include "store.h"

#include "common/sqlite.h"

namespace transaction {

Store::Store(const std::string& path) : inbox_(path) {
  inbox_.read([](sqlite3* db) {
    common::exec(db,
                 "CREATE TABLE IF NOT EXISTS transactions ("
                 " id TEXT PRIMARY KEY, account_id TEXT NOT NULL, amount INTEGER NOT NULL,"
                 " currency TEXT NOT NULL, description TEXT NOT NULL,"
                 " created_at_unix_ms INTEGER NOT NULL)");
  });
}

tern::Result<Transaction> Store::create(const tern::Context& ctx, const Transaction& tx,
                                        std::string_view request) {
  return inbox_.run<Transaction>(
      ctx, "create",
      [&](tern::InboxTransaction& t) -> tern::Result<Transaction> {
        common::Statement(t.db(),
                          "INSERT INTO transactions (id, account_id, amount, currency, description,"
                          " created_at_unix_ms) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(1, tx.id())
            .bind(2, tx.account_id())
            .bind(3, tx.amount())
            .bind(4, tx.currency())
            .bind(5, tx.description())
            .bind(6, tx.created_at_unix_ms())
            .step();
        Created created;
        *created.mutable_transaction() = tx;
        t.publish(ctx, created);
        return tx;
      },
      request);
}

std::optional<Transaction> Store::get(std::string_view account_id, std::string_view id) {
  return inbox_.read([&](sqlite3* db) -> std::optional<Transaction> {
    common::Statement s(db,
                        "SELECT id, account_id, amount, currency, description, created_at_unix_ms"
                        " FROM transactions WHERE id = ? AND account_id = ?");
    s.bind(1, id).bind(2, account_id);
    if (!s.step()) return std::nullopt;
    Transaction tx;
    tx.set_id(s.text(0));
    tx.set_account_id(s.text(1));
    tx.set_amount(s.int64(2));
    tx.set_currency(s.text(3));
    tx.set_description(s.text(4));
    tx.set_created_at_unix_ms(s.int64(5));
    return tx;
  });
}

int Store::relay(const tern::Context& ctx) { return inbox_.relay(ctx); }

int Store::pending() { return inbox_.pending(); }

int Store::expire_keys() { return inbox_.expire(); }

}  // namespace transaction
