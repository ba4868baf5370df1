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
  return tern::call<transaction::Transaction>(ctx, "service.transaction", "create", create);
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
