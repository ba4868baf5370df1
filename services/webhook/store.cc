#include "store.h"

#include <chrono>
#include <mutex>

#include "common/sqlite.h"

namespace webhook {
namespace {

Webhook read_webhook(const common::Statement& s) {
  Webhook w;
  w.set_id(s.text(0));
  w.set_account_id(s.text(1));
  w.set_url(s.text(2));
  w.set_created_at_unix_ms(s.int64(3));
  return w;
}

}  // namespace

Store::Store(const std::string& path) : outbox_(path) {
  common::exec(outbox_.db(),
               "CREATE TABLE IF NOT EXISTS webhooks ("
               " id TEXT PRIMARY KEY, account_id TEXT NOT NULL, url TEXT NOT NULL,"
               " secret TEXT NOT NULL, created_at_unix_ms INTEGER NOT NULL);"
               "CREATE INDEX IF NOT EXISTS webhooks_by_account ON webhooks (account_id);"
               "CREATE TABLE IF NOT EXISTS deliveries ("
               " event_id TEXT NOT NULL, webhook_id TEXT NOT NULL,"
               " created_at_unix_ms INTEGER NOT NULL, PRIMARY KEY (event_id, webhook_id))");
}

void Store::add(const Webhook& w, std::string_view secret) {
  std::lock_guard lock(mu_);
  common::Statement(outbox_.db(),
                    "INSERT INTO webhooks (id, account_id, url, secret, created_at_unix_ms)"
                    " VALUES (?, ?, ?, ?, ?)")
      .bind(1, w.id())
      .bind(2, w.account_id())
      .bind(3, w.url())
      .bind(4, secret)
      .bind(5, w.created_at_unix_ms())
      .step();
}

std::vector<Webhook> Store::list(std::string_view account_id) {
  std::lock_guard lock(mu_);
  common::Statement s(outbox_.db(),
                      "SELECT id, account_id, url, created_at_unix_ms FROM webhooks"
                      " WHERE account_id = ? ORDER BY created_at_unix_ms, id");
  s.bind(1, account_id);
  std::vector<Webhook> out;
  while (s.step()) out.push_back(read_webhook(s));
  return out;
}

int Store::count(std::string_view account_id) {
  std::lock_guard lock(mu_);
  common::Statement s(outbox_.db(), "SELECT COUNT(*) FROM webhooks WHERE account_id = ?");
  s.bind(1, account_id);
  return s.step() ? static_cast<int>(s.int64(0)) : 0;
}

bool Store::remove(std::string_view account_id, std::string_view id) {
  std::lock_guard lock(mu_);
  common::Statement(outbox_.db(), "DELETE FROM webhooks WHERE id = ? AND account_id = ?")
      .bind(1, id)
      .bind(2, account_id)
      .step();
  return common::changes(outbox_.db()) > 0;
}

std::optional<Store::Target> Store::find(std::string_view id) {
  std::lock_guard lock(mu_);
  common::Statement s(
      outbox_.db(),
      "SELECT id, account_id, url, created_at_unix_ms, secret FROM webhooks WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return Target{read_webhook(s), s.text(4)};
}

int Store::fan_out(const tern::Context& ctx, std::string_view account_id, std::string_view event_id,
                   std::string_view event_type, std::string_view body) {
  std::lock_guard lock(mu_);
  int queued = 0;
  outbox_.transaction([&] {
    std::vector<std::string> webhooks;
    {
      common::Statement s(outbox_.db(), "SELECT id FROM webhooks WHERE account_id = ? ORDER BY id");
      s.bind(1, account_id);
      while (s.step()) webhooks.push_back(s.text(0));
    }
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    for (const std::string& webhook_id : webhooks) {
      common::Statement(
          outbox_.db(),
          "INSERT OR IGNORE INTO deliveries (event_id, webhook_id, created_at_unix_ms)"
          " VALUES (?, ?, ?)")
          .bind(1, event_id)
          .bind(2, webhook_id)
          .bind(3, now)
          .step();
      if (common::changes(outbox_.db()) == 0) continue;  // this webhook has it already
      Delivery d;
      d.set_webhook_id(webhook_id);
      d.set_event_id(std::string(event_id));
      d.set_event_type(std::string(event_type));
      d.set_body(std::string(body));
      outbox_.add(ctx, d);
      ++queued;
    }
    return true;
  });
  return queued;
}

int Store::relay(const tern::Context& ctx) {
  std::lock_guard lock(mu_);
  return outbox_.relay(ctx);
}

int Store::pending() {
  std::lock_guard lock(mu_);
  return outbox_.pending();
}

}  // namespace webhook
