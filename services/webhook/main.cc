// service.webhook: keeps accounts' webhooks, and POSTs each of their
// transactions to them, signed, retried, dead-lettered when they keep failing.
#include <tern/env.h>
#include <tern/tern.h>

#include "common/sqlite.h"
#include "handlers.h"

int main(int argc, char** argv) {
  tern::log::set_process_name("service.webhook");
  std::optional<webhook::Store> store;
  webhook::Config config;
  std::chrono::milliseconds relay_every{1000};
  try {
    // TERN_DATA_DIR: where service.webhook.db lives. TERN_OUTBOX_RELAY_MS:
    // how often deliveries left in the outbox are retried.
    using std::chrono::milliseconds;
    constexpr milliseconds kHour{3600 * 1000};
    store.emplace(common::data_file(tern::env::string("TERN_DATA_DIR", "./data"), "service.webhook"));
    relay_every = tern::env::duration_ms("TERN_OUTBOX_RELAY_MS", relay_every, milliseconds(1), kHour);
    config.timeout = tern::env::duration_ms("TERN_WEBHOOK_TIMEOUT_MS", config.timeout, milliseconds(1), kHour);
    config.connect_timeout = tern::env::duration_ms("TERN_WEBHOOK_CONNECT_TIMEOUT_MS", config.connect_timeout,
                                                    milliseconds(1), kHour);
    // TERN_WEBHOOK_ALLOW: address ranges webhooks may reach although the
    // egress policy denies them by default ("127.0.0.1/32,::1/128").
    config.egress = tern::http::EgressPolicy::from_list(
        "TERN_WEBHOOK_ALLOW", tern::env::string("TERN_WEBHOOK_ALLOW", ""));
    // TERN_WEBHOOK_CA_FILE: the CAs https:// receivers' certificates must
    // chain to (PEM); unset: the system's store. Loaded now, so a bad file
    // stops start-up rather than every delivery.
    config.ca_file = tern::env::string("TERN_WEBHOOK_CA_FILE", "");
    if (!config.ca_file.empty()) tern::http::check_ca_file("TERN_WEBHOOK_CA_FILE", config.ca_file);
  } catch (const std::exception& e) {
    tern::log::error("cannot start: {}", e.what());
    return 2;
  }
  for (const auto& range : config.egress.allowed())
    tern::log::warn("webhooks may reach {} (TERN_WEBHOOK_ALLOW)", range.to_string());
  tern::log::info("https:// receivers are checked against {}",
                  config.ca_file.empty() ? std::string("the system's CA store") : "the CAs of " + config.ca_file);
  webhook::Webhooks webhooks{*store, config};
  tern::Service svc{"service.webhook"};
  svc.handle("register", [&](tern::Context& ctx, const webhook::RegisterRequest& req) {
    return webhooks.register_webhook(ctx, req);
  });
  svc.handle("list", [&](tern::Context& ctx, const webhook::ListRequest& req) {
    return webhooks.list(ctx, req);
  });
  svc.handle("deregister", [&](tern::Context& ctx, const webhook::DeregisterRequest& req) {
    return webhooks.deregister(ctx, req);
  });
  svc.subscribe<transaction::Created>("transaction.created",
                                      [&](tern::Context& ctx, const transaction::Created& e) {
                                        return webhooks.on_transaction_created(ctx, e);
                                      });
  // Money moves on service.transaction's word only: the broker verifies
  // who published, and anyone else's transaction.Created is dead-lettered.
  svc.require_publishers("transaction.created", {"service.transaction"});
  svc.subscribe<webhook::Delivery>(
      "webhook.delivery",
      [&](tern::Context& ctx, const webhook::Delivery& d) { return webhooks.on_delivery(ctx, d); });
  svc.every(relay_every, [&](tern::Context& ctx) { store->relay(ctx); });
  return svc.run(argc, argv);
}
