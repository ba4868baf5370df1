#include <tern/call.h>
#include <tern/events.h>

#include <catch2/catch.hpp>

#include "handlers.h"
#include "store.h"

using namespace std::chrono_literals;

namespace {

// Records published events; `up` false plays a broker that is away.
class RecordingTransport final : public tern::Transport {
 public:
  struct Published {
    std::string type, routing_key, body;
  };
  bool up = true;
  std::vector<Published> published;

  tern::Result<std::string> call(const tern::Context&, std::string_view, std::string_view,
                                 std::string, const tern::CallOptions&) override {
    return tern::Error{tern::Code::kUnavailable, "no calls here"};
  }
  tern::Error publish(const tern::Context&, std::string_view type, std::string_view key,
                      std::string body) override {
    if (!up) return tern::Error{tern::Code::kUnavailable, "broker away"};
    published.push_back({std::string(type), std::string(key), std::move(body)});
    return tern::ok();
  }
};

transaction::CreateRequest coffee() {
  transaction::CreateRequest req;
  req.set_account_id("acc_1");
  req.set_amount(1250);
  req.set_currency("GBP");
  req.set_description("coffee");
  return req;
}

struct Fixture {
  RecordingTransport transport;
  tern::Context ctx = [this] {
    auto c = tern::Context::with_timeout(5s);
    c.set_transport(&transport);
    return c;
  }();
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

  REQUIRE(f.transport.published.size() == 1);
  const auto& event = f.transport.published[0];
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
  f.transport.up = false;
  REQUIRE(f.transactions.create(f.ctx, coffee()).ok());
  CHECK(f.transport.published.empty());
  CHECK(f.store.pending() == 1);
  f.transport.up = true;
  CHECK(f.store.relay(f.ctx) == 1);
  CHECK(f.transport.published.size() == 1);
  CHECK(f.store.relay(f.ctx) == 0);
}

TEST_CASE("a refused create keeps nothing and publishes nothing") {
  Fixture f;
  auto req = coffee();
  req.set_currency("pounds");
  CHECK(f.transactions.create(f.ctx, req).code() == tern::Code::kInvalidArgument);
  CHECK(f.transport.published.empty());
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
