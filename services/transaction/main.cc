// service.transaction: stores transactions and announces each one as a
// transaction.created event, through an outbox in the same SQLite file.
#include <tern/env.h>
#include <tern/tern.h>

#include "common/sqlite.h"
#include "handlers.h"

int main(int argc, char** argv) {
  tern::log::set_process_name("service.transaction");
  std::optional<transaction::Store> store;
  std::chrono::milliseconds relay_every{1000};
  try {
    // TERN_DATA_DIR: where service.transaction.db lives. TERN_OUTBOX_RELAY_MS:
    // how often events left in the outbox are retried.
    store.emplace(
        common::data_file(tern::env::string("TERN_DATA_DIR", "./data"), "service.transaction"));
    relay_every = tern::env::duration_ms("TERN_OUTBOX_RELAY_MS", relay_every, std::chrono::milliseconds(1),
                                         std::chrono::hours(1));
  } catch (const std::exception& e) {
    tern::log::error("cannot start: {}", e.what());
    return 2;
  }
  transaction::Transactions transactions{*store};
  tern::Service svc{"service.transaction"};
  svc.handle("create", [&](tern::Context& ctx, const transaction::CreateRequest& req) {
    return transactions.create(ctx, req);
  });
  svc.handle("get", [&](tern::Context& ctx, const transaction::GetRequest& req) {
    return transactions.get(ctx, req);
  });
  // Money is created for an account only by api.transaction, which has
  // authenticated the account: by its broker user, as the broker verified
  // it (ctx.caller()), not by a name the request declares. Anyone else,
  // the CLI's tern-cli and the administrator included, gets
  // PERMISSION_DENIED and the handler does not run.
  svc.allow_callers("create", {"api.transaction"});
  svc.every(relay_every, [&](tern::Context& ctx) { store->relay(ctx); });
  svc.every(std::chrono::hours(1), [&](tern::Context&) { store->expire_keys(); });
  return svc.run(argc, argv);
}
