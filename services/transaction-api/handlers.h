// api.transaction's endpoints, apart from the bus. Both authenticate the
// caller (auth::authenticate) and act on the caller's account only.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include "transaction.pb.h"
#include "transaction_api.pb.h"

namespace transaction_api {

// POST /: service.transaction create for the caller's account. A request
// with an idempotency key (the gateway's Idempotency-Key header) calls
// create with "<account>/<key>": one transaction per account and key,
// however often the request is retried or repeated, on any instance.
tern::Result<transaction::Transaction> create(tern::Context& ctx, const CreateRequest& req);
// GET /:id: service.transaction get; NOT_FOUND for another account's.
tern::Result<transaction::Transaction> get(tern::Context& ctx, const GetRequest& req);

}  // namespace transaction_api
