// service.balance's endpoint and event handler, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include "balance.pb.h"
#include "store.h"
#include "transaction.pb.h"

namespace balance {

// Handlers may run on any thread at once (the store serializes itself).
class Balances {
 public:
  explicit Balances(Store& store) : store_(store) {}

  // transaction.created: applies the transaction to its account's balance,
  // once per transaction id (a duplicate is acked: code kOk). An event
  // that cannot apply (no id or account, amount not positive, another
  // currency than the account's, overflow) answers an error, so the
  // platform retries it and then dead-letters it for a person to look at.
  tern::Error on_created(tern::Context& ctx, const transaction::Created& event);

  // account_id -> its balance; INVALID_ARGUMENT without an account id.
  tern::Result<Balance> get(tern::Context& ctx, const GetRequest& req);

 private:
  Store& store_;
};

}  // namespace balance
