#include "handlers.h"

#include <tern/call.h>

#include "auth/authenticate.h"

namespace transaction_api {

tern::Result<transaction::Transaction> create(tern::Context& ctx, const CreateRequest& req) {
  auto account = auth::authenticate(ctx);
  if (!account.ok()) return account.error();
  transaction::CreateRequest create;
  create.set_account_id(*account);
  create.set_amount(req.amount());
  create.set_currency(req.currency());
  create.set_description(req.description());
  tern::CallOptions opts;
  // The caller's key (the gateway's Idempotency-Key), scoped by the
  // account: service.transaction keeps one transaction per account and key.
  if (!ctx.idempotency_key().empty()) opts.idempotency_key = *account + "/" + ctx.idempotency_key();
  return tern::call<transaction::Transaction>(ctx, "service.transaction", "create", create, opts);
}

tern::Result<transaction::Transaction> get(tern::Context& ctx, const GetRequest& req) {
  auto account = auth::authenticate(ctx);
  if (!account.ok()) return account.error();
  transaction::GetRequest get;
  get.set_account_id(*account);
  get.set_id(req.id());
  return tern::call<transaction::Transaction>(ctx, "service.transaction", "get", get);
}

}  // namespace transaction_api
