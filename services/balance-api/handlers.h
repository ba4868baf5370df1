// api.balance's endpoint, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include "balance.pb.h"
#include "balance_api.pb.h"

namespace balance_api {

// GET /: the caller's balance (auth::authenticate, then service.balance get).
tern::Result<balance::Balance> get(tern::Context& ctx, const GetRequest& req);

}  // namespace balance_api
