// service.transaction's endpoints, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include <cstdint>
#include <functional>

#include "store.h"
#include "transaction.pb.h"

namespace transaction {

// The largest amount one transaction may move, in minor units: keeps sums
// of many transactions far from int64's range.
inline constexpr int64_t kMaxAmount = 1'000'000'000'000;
inline constexpr size_t kMaxDescriptionBytes = 500;

// INVALID_ARGUMENT naming the first field of `req` that is not acceptable
// (account_id empty; amount not in 1..kMaxAmount; currency not three
// upper-case letters; description too long); code kOk otherwise.
tern::Error check(const CreateRequest& req);

using Clock = std::function<int64_t()>;  // Unix ms now
int64_t system_now_unix_ms();

// Handlers may run on any thread at once (the store serializes itself).
class Transactions {
 public:
  explicit Transactions(Store& store, Clock now = system_now_unix_ms)
      : store_(store), now_(std::move(now)) {}

  // Stores a new transaction with its transaction.created event, then
  // relays the event (if the broker is away the event stays in the outbox
  // for the periodic relay: the create still succeeds). With an
  // idempotency key (ctx.idempotency_key()) the transaction, its event and
  // the key commit together: a repeat of the key, on any instance sharing
  // the database, stores nothing and returns the transaction stored first.
  tern::Result<Transaction> create(tern::Context& ctx, const CreateRequest& req);
  // NOT_FOUND unless `id` is a transaction of `account_id`.
  tern::Result<Transaction> get(tern::Context& ctx, const GetRequest& req);

 private:
  Store& store_;
  Clock now_;
};

}  // namespace transaction
