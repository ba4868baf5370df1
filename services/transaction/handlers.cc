#include "handlers.h"

#include <tern/log.h>

#include <algorithm>
#include <chrono>

#include "common/crypto.h"

namespace transaction {
namespace {

tern::Error invalid(std::string field, std::string why) {
  return tern::Error{tern::Code::kInvalidArgument, field + " " + why}.with_param("field", field);
}

}  // namespace

int64_t system_now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

tern::Error check(const CreateRequest& req) {
  if (req.account_id().empty()) return invalid("account_id", "is required");
  if (req.amount() <= 0 || req.amount() > kMaxAmount)
    return invalid("amount", "must be a positive number of minor units, at most " +
                                 std::to_string(kMaxAmount));
  const std::string& c = req.currency();
  if (c.size() != 3 ||
      !std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; }))
    return invalid("currency", "must be three upper-case letters (ISO 4217), like GBP");
  if (req.description().size() > kMaxDescriptionBytes)
    return invalid("description",
                   "must be at most " + std::to_string(kMaxDescriptionBytes) + " bytes");
  return tern::ok();
}

tern::Result<Transaction> Transactions::create(tern::Context& ctx, const CreateRequest& req) {
  if (tern::Error e = check(req); !e.ok()) return e;
  Transaction tx;
  tx.set_id("tx_" + common::random_hex(12));
  tx.set_account_id(req.account_id());
  tx.set_amount(req.amount());
  tx.set_currency(req.currency());
  tx.set_description(req.description());
  tx.set_created_at_unix_ms(now_());
  auto stored = store_.create(ctx, tx, req.SerializeAsString());
  if (!stored.ok()) return stored;
  try {
    if (store_.relay(ctx) == 0 && store_.pending() > 0)
      tern::log::warn("transaction {} stored; its event waits in the outbox for the next relay",
                      stored->id());
  } catch (const std::exception& e) {
    // Stored and committed: the periodic relay sends the event later.
    tern::log::warn("transaction {} stored; relaying its event failed: {}", stored->id(), e.what());
  }
  return stored;
}

tern::Result<Transaction> Transactions::get(tern::Context&, const GetRequest& req) {
  auto tx = store_.get(req.account_id(), req.id());
  if (!tx) return tern::Error{tern::Code::kNotFound, "no transaction " + req.id()};
  return std::move(*tx);
}

}  // namespace transaction
