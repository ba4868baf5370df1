#include <tern/call.h>
#include <tern/events.h>
#include <tern/testing.h>

#include <catch2/catch.hpp>

#include "handlers.h"
#include "store.h"

using namespace std::chrono_literals;

namespace {

transaction::CreateRequest coffee() {
  transaction::CreateRequest req;
  req.set_account_id("acc_1");
  req.set_amount(1250);
  req.set_currency("GBP");
  req.set_description("coffee");
  return req;
}

struct Fixture {
  tern::testing::FakeTransport transport;  // records published events
  tern::Context ctx = transport.context(5s);
  transaction::Store store{":memory:"};
  transaction::Transactions transactions{store, [] { return int64_t{42}; }};
};

}  // namespace

TEST_CASE("create requests are checked field by field") {
  CHECK(transaction::check(coffee()).ok());
  auto bad = [](auto mutate) {
    auto req = coffee();
    mutate(req);
    auto e = transaction::check(req);
    return e.ok() ? std::string("ok") : e.params.at("field");
  };
  using R = transaction::CreateRequest;
  CHECK(bad([](R& r) { r.clear_account_id(); }) == "account_id");
  CHECK(bad([](R& r) { r.set_amount(0); }) == "amount");
  CHECK(bad([](R& r) { r.set_amount(-5); }) == "amount");
  CHECK(bad([](R& r) { r.set_amount(transaction::kMaxAmount + 1); }) == "amount");
  CHECK(bad([](R& r) { r.set_amount(transaction::kMaxAmount); }) == "ok");
  CHECK(bad([](R& r) { r.set_currency("gbp"); }) == "currency");
  CHECK(bad([](R& r) { r.set_currency("GB"); }) == "currency");
  CHECK(bad([](R& r) { r.set_currency("GBPX"); }) == "currency");
  CHECK(bad([](R& r) { r.set_currency("G1P"); }) == "currency");
  CHECK(bad([](R& r) { r.clear_description(); }) == "ok");
  CHECK(bad([](R& r) { r.set_description(std::string(501, 'x')); }) == "description");
}

TEST_CASE("the event is transaction.Created with routing key transaction.created") {
  CHECK(tern::event_routing_key(transaction::Created::descriptor()) == "transaction.created");
}

TEST_CASE("create stores the transaction and publishes transaction.created carrying it") {
  Fixture f;
  auto tx = f.transactions.create(f.ctx, coffee());
  REQUIRE(tx.ok());
  CHECK(tx->id().starts_with("tx_"));
  CHECK(tx->id().size() == 27);
  CHECK(tx->account_id() == "acc_1");
  CHECK(tx->amount() == 1250);
  CHECK(tx->created_at_unix_ms() == 42);

  REQUIRE(f.transport.publishes().size() == 1);
  const auto& event = f.transport.publishes()[0];
  CHECK(event.type == "transaction.Created");
  CHECK(event.routing_key == "transaction.created");
  transaction::Created created;
  REQUIRE(created.ParseFromString(event.body));
  CHECK(created.transaction().SerializeAsString() == tx->SerializeAsString());
  CHECK(f.store.pending() == 0);

  transaction::GetRequest get;
  get.set_account_id("acc_1");
  get.set_id(tx->id());
  auto back = f.transactions.get(f.ctx, get);
  REQUIRE(back.ok());
  CHECK(back->SerializeAsString() == tx->SerializeAsString());
}

TEST_CASE(
    "a create while the broker is away succeeds, and its event goes out with the next relay") {
  Fixture f;
  f.transport.fail_publishes(tern::Error{tern::Code::kUnavailable, "broker away"});
  REQUIRE(f.transactions.create(f.ctx, coffee()).ok());
  CHECK(f.transport.publishes().empty());
  CHECK(f.store.pending() == 1);
  f.transport.fail_publishes(tern::ok());
  CHECK(f.store.relay(f.ctx) == 1);
  CHECK(f.transport.publishes().size() == 1);
  CHECK(f.store.relay(f.ctx) == 0);
}

TEST_CASE("a refused create keeps nothing and publishes nothing") {
  Fixture f;
  auto req = coffee();
  req.set_currency("pounds");
  CHECK(f.transactions.create(f.ctx, req).code() == tern::Code::kInvalidArgument);
  CHECK(f.transport.publishes().empty());
  CHECK(f.store.pending() == 0);
}

TEST_CASE("get finds only the account's own transactions") {
  Fixture f;
  auto tx = f.transactions.create(f.ctx, coffee());
  REQUIRE(tx.ok());
  transaction::GetRequest get;
  get.set_account_id("acc_2");
  get.set_id(tx->id());
  CHECK(f.transactions.get(f.ctx, get).code() == tern::Code::kNotFound);
  get.set_account_id("acc_1");
  get.set_id("tx_missing");
  CHECK(f.transactions.get(f.ctx, get).code() == tern::Code::kNotFound);
}

TEST_CASE("a create repeated with its idempotency key stores one transaction and returns the first") {
  Fixture f;
  f.ctx.set_idempotency_key("acc_1/key-1");
  auto first = f.transactions.create(f.ctx, coffee());
  auto again = f.transactions.create(f.ctx, coffee());
  REQUIRE(first.ok());
  REQUIRE(again.ok());
  CHECK(again->SerializeAsString() == first->SerializeAsString());
  CHECK(f.transport.publishes().size() == 1);   // one transaction, one event

  auto changed = coffee();
  changed.set_amount(999);
  auto reused = f.transactions.create(f.ctx, changed);
  CHECK(reused.code() == tern::Code::kInvalidArgument);

  f.ctx.set_idempotency_key("acc_1/key-2");
  auto other = f.transactions.create(f.ctx, coffee());
  REQUIRE(other.ok());
  CHECK(other->id() != first->id());
}
