// api.auth's endpoints, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include "auth_api.pb.h"

namespace auth_api {

// POST /token: a token from service.auth for account_id + password; its
// errors (UNAUTHENTICATED...) as they come.
tern::Result<TokenResponse> token(tern::Context& ctx, const TokenRequest& req);

}  // namespace auth_api
