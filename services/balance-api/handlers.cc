#include "handlers.h"

#include <tern/call.h>

#include "auth/authenticate.h"

namespace balance_api {

tern::Result<balance::Balance> get(tern::Context& ctx, const GetRequest&) {
  auto account = auth::authenticate(ctx);
  if (!account.ok()) return account.error();
  balance::GetRequest get;
  get.set_account_id(*account);
  return tern::call<balance::Balance>(ctx, "service.balance", "get", get, {.idempotent = true});
}

}  // namespace balance_api
