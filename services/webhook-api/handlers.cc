#include "handlers.h"

#include <tern/call.h>

#include "auth/authenticate.h"

namespace webhook_api {

tern::Result<webhook::RegisterResponse> register_webhook(tern::Context& ctx,
                                                         const RegisterRequest& req) {
  auto account = auth::authenticate(ctx);
  if (!account.ok()) return account.error();
  webhook::RegisterRequest r;
  r.set_account_id(*account);
  r.set_url(req.url());
  return tern::call<webhook::RegisterResponse>(ctx, "service.webhook", "register", r);
}

tern::Result<webhook::ListResponse> list(tern::Context& ctx, const ListRequest&) {
  auto account = auth::authenticate(ctx);
  if (!account.ok()) return account.error();
  webhook::ListRequest r;
  r.set_account_id(*account);
  return tern::call<webhook::ListResponse>(ctx, "service.webhook", "list", r, {.idempotent = true});
}

tern::Result<webhook::DeregisterResponse> deregister(tern::Context& ctx,
                                                     const DeregisterRequest& req) {
  auto account = auth::authenticate(ctx);
  if (!account.ok()) return account.error();
  webhook::DeregisterRequest r;
  r.set_account_id(*account);
  r.set_id(req.id());
  return tern::call<webhook::DeregisterResponse>(ctx, "service.webhook", "deregister", r);
}

}  // namespace webhook_api
