// api.webhook's endpoints, apart from the bus. Each authenticates the caller
// (auth::authenticate) and acts on the caller's account only.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include "webhook.pb.h"
#include "webhook_api.pb.h"

namespace webhook_api {

// POST /: registers url for the caller's account.
tern::Result<webhook::RegisterResponse> register_webhook(tern::Context& ctx,
                                                         const RegisterRequest& req);
// GET /: the caller's webhooks.
tern::Result<webhook::ListResponse> list(tern::Context& ctx, const ListRequest& req);
// DELETE /:id: NOT_FOUND unless it is one of the caller's.
tern::Result<webhook::DeregisterResponse> deregister(tern::Context& ctx,
                                                     const DeregisterRequest& req);

}  // namespace webhook_api
