#include "handlers.h"

#include <tern/log.h>

namespace balance {

tern::Error Balances::on_created(tern::Context& ctx, const transaction::Created& event) {
  const transaction::Transaction& tx = event.transaction();
  if (tx.id().empty() || tx.account_id().empty() || tx.amount() <= 0 || tx.currency().empty())
    return tern::Error{tern::Code::kInvalidArgument,
                       "transaction.created without id, account, amount or currency"};
  auto outcome = store_.apply(ctx, tx);
  if (!outcome.ok()) return outcome.error();
  if (*outcome == Store::Outcome::kDuplicate)
    tern::log::info("transaction {} already applied; event {} ignored", tx.id(), ctx.request_id());
  return tern::ok();
}

tern::Result<Balance> Balances::get(tern::Context&, const GetRequest& req) {
  if (req.account_id().empty())
    return tern::Error{tern::Code::kInvalidArgument, "account_id is required"};
  return store_.get(req.account_id());
}

}  // namespace balance
