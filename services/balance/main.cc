// service.balance: keeps each account's balance from transaction.created.
#include <tern/env.h>
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::log::set_process_name("service.balance");
  std::optional<balance::Store> store;
  try {
    // TERN_DATA_DIR: where service.balance.db lives.
    store.emplace(common::data_file(tern::env::string("TERN_DATA_DIR", "./data"), "service.balance"));
  } catch (const std::exception& e) {
    tern::log::error("cannot start: {}", e.what());
    return 2;
  }
  balance::Balances balances{*store};
  tern::Service svc{"service.balance"};
  svc.handle("get", [&](tern::Context& ctx, const balance::GetRequest& req) {
    return balances.get(ctx, req);
  });
  svc.subscribe<transaction::Created>("transaction.created",
                                      [&](tern::Context& ctx, const transaction::Created& event) {
                                        return balances.on_created(ctx, event);
                                      });
  // Money moves on service.transaction's word only: the broker verifies
  // who published, and anyone else's transaction.Created is dead-lettered.
  svc.require_publishers("transaction.created", {"service.transaction"});
  return svc.run(argc, argv);
}
