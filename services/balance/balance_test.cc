#include <catch2/catch.hpp>

#include "handlers.h"
#include "store.h"

using namespace std::chrono_literals;

namespace {

transaction::Created created(std::string id, std::string account, int64_t amount,
                             std::string currency = "GBP") {
  transaction::Created e;
  auto* tx = e.mutable_transaction();
  tx->set_id(std::move(id));
  tx->set_account_id(std::move(account));
  tx->set_amount(amount);
  tx->set_currency(std::move(currency));
  return e;
}

// An event handler's context: its request id is the event id.
tern::Context event_context(std::string event_id) {
  return tern::Context::from_wire(tern::to_unix_ms(tern::Context::Clock::now() + 5s),
                                  "trace", "span", "", std::move(event_id), "service.transaction",
                                  {});
}

int64_t balance_of(balance::Balances& b, std::string account) {
  auto ctx = tern::Context::with_timeout(1s);
  balance::GetRequest req;
  req.set_account_id(std::move(account));
  return b.get(ctx, req)->balance();
}

}  // namespace

TEST_CASE("an account with no transactions has 0 GBP") {
  balance::Store store{":memory:"};
  balance::Balances b{store};
  auto ctx = tern::Context::with_timeout(1s);
  balance::GetRequest req;
  req.set_account_id("acc_new");
  auto got = b.get(ctx, req);
  REQUIRE(got.ok());
  CHECK(got->balance() == 0);
  CHECK(got->currency() == "GBP");
  req.clear_account_id();
  CHECK(b.get(ctx, req).code() == tern::Code::kInvalidArgument);
}

TEST_CASE("transactions add up per account") {
  balance::Store store{":memory:"};
  balance::Balances b{store};
  auto ctx = event_context("ev_1");
  CHECK(b.on_created(ctx, created("tx_1", "acc_1", 1250)).ok());
  CHECK(b.on_created(ctx = event_context("ev_2"), created("tx_2", "acc_1", 250)).ok());
  CHECK(b.on_created(ctx = event_context("ev_3"), created("tx_3", "acc_2", 99)).ok());
  CHECK(balance_of(b, "acc_1") == 1500);
  CHECK(balance_of(b, "acc_2") == 99);
}

TEST_CASE("an event delivered twice applies once, under its own or a new event id") {
  balance::Store store{":memory:"};
  balance::Balances b{store};
  auto first = event_context("ev_1");
  auto redelivered = event_context("ev_1");      // the broker's redelivery, a replay
  auto republished = event_context("ev_other");  // the outbox publishing it again
  const auto event = created("tx_1", "acc_1", 1250);
  CHECK(b.on_created(first, event).ok());
  CHECK(b.on_created(redelivered, event).ok());
  CHECK(b.on_created(republished, event).ok());
  CHECK(balance_of(b, "acc_1") == 1250);
  auto third = event_context("ev_3");
  CHECK(store.apply(third, event.transaction()).value() == balance::Store::Outcome::kDuplicate);
  CHECK(store.apply(redelivered, event.transaction()).value() == balance::Store::Outcome::kDuplicate);
}

TEST_CASE("the account keeps the currency of its first transaction") {
  balance::Store store{":memory:"};
  balance::Balances b{store};
  auto ctx = event_context("ev_1");
  CHECK(b.on_created(ctx, created("tx_1", "acc_1", 100, "EUR")).ok());
  auto euro = tern::Context::with_timeout(1s);
  balance::GetRequest req;
  req.set_account_id("acc_1");
  CHECK(b.get(euro, req)->currency() == "EUR");
  auto e = b.on_created(ctx = event_context("ev_2"), created("tx_2", "acc_1", 100, "GBP"));
  CHECK(e.code == tern::Code::kFailedPrecondition);
  CHECK(balance_of(b, "acc_1") == 100);
  // Refused, so not recorded as applied: a replay after a fix may apply it.
  auto replayed = event_context("ev_2");
  CHECK(store.apply(replayed, created("tx_2", "acc_1", 100, "EUR").transaction()).value() ==
        balance::Store::Outcome::kApplied);
}

TEST_CASE("malformed events and overflow are errors, and change nothing") {
  balance::Store store{":memory:"};
  balance::Balances b{store};
  auto ctx = event_context("ev_1");
  CHECK(b.on_created(ctx, created("", "acc_1", 5)).code == tern::Code::kInvalidArgument);
  CHECK(b.on_created(ctx, created("tx_1", "", 5)).code == tern::Code::kInvalidArgument);
  CHECK(b.on_created(ctx, created("tx_1", "acc_1", 0)).code == tern::Code::kInvalidArgument);
  CHECK(b.on_created(ctx, created("tx_1", "acc_1", -5)).code == tern::Code::kInvalidArgument);
  CHECK(b.on_created(ctx, created("tx_big", "acc_1", INT64_MAX)).ok());
  // Each event has an id of its own (the same id is the same event).
  CHECK(b.on_created(ctx = event_context("ev_2"), created("tx_more", "acc_1", 1)).code ==
        tern::Code::kOutOfRange);
  CHECK(balance_of(b, "acc_1") == INT64_MAX);
}
