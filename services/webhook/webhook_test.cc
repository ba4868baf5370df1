#include <tern/call.h>
#include <tern/events.h>
#include <tern/json.h>
#include <tern/testing.h>

#include <catch2/catch.hpp>
#include <set>

#include "handlers.h"
#include "store.h"

using namespace std::chrono_literals;

namespace {

struct Fetched {
  std::string url;
  tern::http::Request request;
};

struct Fixture {
  tern::testing::FakeTransport transport;  // records published events
  tern::Context ctx = transport.context(5s);
  webhook::Store store{":memory:"};
  std::vector<Fetched> fetched;
  tern::Result<tern::http::Response> answer = tern::http::Response{};  // 200
  webhook::Webhooks webhooks{store,
                             {},
                             [this](const tern::Context&, std::string_view url,
                                    tern::http::Request req, std::chrono::milliseconds) {
                               fetched.push_back({std::string(url), std::move(req)});
                               return answer;
                             },
                             [n = int64_t{42}]() mutable { return n++; }};

  webhook::RegisterResponse add(std::string account,
                                std::string url = "http://127.0.0.1:9999/hook") {
    webhook::RegisterRequest req;
    req.set_account_id(std::move(account));
    req.set_url(std::move(url));
    auto r = webhooks.register_webhook(ctx, req);
    REQUIRE(r.ok());
    return *r;
  }
  std::vector<webhook::Webhook> list(std::string account) {
    webhook::ListRequest req;
    req.set_account_id(std::move(account));
    auto r = webhooks.list(ctx, req);
    REQUIRE(r.ok());
    return {r->webhooks().begin(), r->webhooks().end()};
  }
  tern::Code deregister(std::string account, std::string id) {
    webhook::DeregisterRequest req;
    req.set_account_id(std::move(account));
    req.set_id(std::move(id));
    return webhooks.deregister(ctx, req).code();
  }
  std::vector<webhook::Delivery> deliveries() {
    for (const auto& p : transport.publishes()) CHECK(p.routing_key == "webhook.delivery");
    return transport.published<webhook::Delivery>();
  }
};

transaction::Created created(std::string id, std::string account) {
  transaction::Created e;
  auto* tx = e.mutable_transaction();
  tx->set_id(std::move(id));
  tx->set_account_id(std::move(account));
  tx->set_amount(1250);
  tx->set_currency("GBP");
  tx->set_description("coffee");
  tx->set_created_at_unix_ms(7);
  return e;
}

const std::string* header(const tern::http::Request& r, std::string_view name) {
  return r.header(name);
}

}  // namespace

TEST_CASE("the signature is the hex HMAC-SHA256 of the body (RFC 4231 test case 2)") {
  CHECK(webhook::sign("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(webhook::sign(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST_CASE("webhook URLs are plain http with a host") {
  for (std::string ok : {"http://127.0.0.1:9999/hook", "http://example.com", "http://h/p?q=1&r=2",
                         "http://[::1]:8080/x", "http://h:65535/"})
    CHECK(webhook::check_url(ok).ok());
  for (std::string bad : std::vector<std::string>{
           "", "https://example.com/hook", "ftp://h/", "HTTP://h/", "http://", "http:///path",
           "http://:80/", "http://h:0/", "http://h:65536/", "http://h:x/", "http://h:/",
           "http://user:pw@h/", "http://h/a b", "http://h/#frag", "http://h/\n",
           "http://h/" + std::string(2048, 'a')}) {
    INFO(bad);
    auto e = webhook::check_url(bad);
    CHECK(e.code == tern::Code::kInvalidArgument);
  }
}

TEST_CASE("register, list and deregister, each account seeing only its own") {
  Fixture f;
  auto a1 = f.add("acc_a", "http://127.0.0.1:9999/a1");
  auto a2 = f.add("acc_a", "http://127.0.0.1:9999/a2");
  auto b1 = f.add("acc_b", "http://127.0.0.1:9999/b1");
  CHECK(a1.id().starts_with("wh_"));
  CHECK(a1.secret().starts_with("whsec_"));
  CHECK(a1.secret().size() == 6 + 48);
  CHECK(a1.id() != a2.id());
  CHECK(a1.secret() != a2.secret());

  auto listed = f.list("acc_a");
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].url().ends_with("/a1"));
  CHECK(listed[1].url().ends_with("/a2"));
  CHECK(listed[0].created_at_unix_ms() == 42);
  CHECK(f.list("acc_b").size() == 1);
  CHECK(f.list("acc_c").empty());

  CHECK(f.deregister("acc_b", a1.id()) == tern::Code::kNotFound);  // not acc_b's
  CHECK(f.list("acc_a").size() == 2);
  CHECK(f.deregister("acc_a", a1.id()) == tern::Code::kOk);
  CHECK(f.deregister("acc_a", a1.id()) == tern::Code::kNotFound);  // gone
  CHECK(f.list("acc_a").size() == 1);
  CHECK(f.deregister("acc_b", b1.id()) == tern::Code::kOk);
}

TEST_CASE("register refuses bad URLs, no account, and too many webhooks") {
  Fixture f;
  webhook::RegisterRequest req;
  req.set_account_id("acc_a");
  req.set_url("https://example.com/hook");
  CHECK(f.webhooks.register_webhook(f.ctx, req).code() == tern::Code::kInvalidArgument);
  req.set_url("http://example.com/hook");
  req.clear_account_id();
  CHECK(f.webhooks.register_webhook(f.ctx, req).code() == tern::Code::kInvalidArgument);
  for (int i = 0; i < webhook::kMaxWebhooksPerAccount; ++i) f.add("acc_a");
  req.set_account_id("acc_a");
  CHECK(f.webhooks.register_webhook(f.ctx, req).code() == tern::Code::kFailedPrecondition);
}

TEST_CASE("what is listed, and the register response, never hold more than they should") {
  CHECK(webhook::Webhook::descriptor()->FindFieldByName("secret") == nullptr);
  CHECK(webhook::Delivery::descriptor()->FindFieldByName("secret") == nullptr);
  const auto* r = webhook::RegisterResponse::descriptor();
  REQUIRE(r->field_count() == 2);
  CHECK(r->field(0)->name() == "id");
  CHECK(r->field(1)->name() == "secret");
}

TEST_CASE("a transaction fans out once to each of its account's webhooks") {
  Fixture f;
  auto a1 = f.add("acc_a");
  auto a2 = f.add("acc_a");
  f.add("acc_b");
  const auto event = created("tx_1", "acc_a");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, event).ok());
  auto ds = f.deliveries();
  REQUIRE(ds.size() == 2);
  std::set<std::string> to{ds[0].webhook_id(), ds[1].webhook_id()};
  CHECK(to == std::set<std::string>{a1.id(), a2.id()});
  for (const auto& d : ds) {
    CHECK(d.event_id() == "transaction.created:tx_1");
    CHECK(d.event_type() == "transaction.created");
    CHECK(d.body() == tern::json::to_json(event.transaction()));
  }
  for (const auto& p : f.transport.publishes()) {
    CHECK(p.body.find(a1.secret()) == std::string::npos);  // secrets stay off the bus
    CHECK(p.body.find(a2.secret()) == std::string::npos);
  }
  CHECK(f.store.pending() == 0);

  // The same event again (a redelivery, or republished under a new event id): nothing new.
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, event).ok());
  CHECK(f.transport.publishes().size() == 2);

  // A webhook registered since gets it if it comes again; the others do not get it twice.
  auto a3 = f.add("acc_a");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, event).ok());
  REQUIRE(f.transport.publishes().size() == 3);
  CHECK(f.deliveries().back().webhook_id() == a3.id());
}

TEST_CASE("the transaction's JSON holds its id, amount, currency and description") {
  const std::string json = tern::json::to_json(created("tx_1", "acc_a").transaction());
  CHECK_THAT(json, Catch::Contains(R"("id":"tx_1")"));
  CHECK_THAT(json, Catch::Contains(R"("amount":1250)"));
  CHECK_THAT(json, Catch::Contains(R"("currency":"GBP")"));
  CHECK_THAT(json, Catch::Contains(R"("description":"coffee")"));
}

TEST_CASE("a delivery POSTs the body, signed with the webhook's secret") {
  Fixture f;
  auto hook = f.add("acc_a", "http://127.0.0.1:9999/hook");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, created("tx_1", "acc_a")).ok());
  auto d = f.deliveries().at(0);
  REQUIRE(f.webhooks.on_delivery(f.ctx, d).ok());
  REQUIRE(f.fetched.size() == 1);
  const auto& sent = f.fetched[0];
  CHECK(sent.url == "http://127.0.0.1:9999/hook");
  CHECK(sent.request.method == "POST");
  CHECK(sent.request.body == d.body());
  REQUIRE(header(sent.request, "x-tern-signature") != nullptr);
  CHECK(*header(sent.request, "X-Tern-Signature") == webhook::sign(hook.secret(), d.body()));
  CHECK(*header(sent.request, "Content-Type") == "application/json");
  CHECK(*header(sent.request, "X-Tern-Event-Id") == "transaction.created:tx_1");
}

TEST_CASE("a failed delivery is UNAVAILABLE, to be retried, and one to a deleted webhook is done") {
  Fixture f;
  auto hook = f.add("acc_a");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, created("tx_1", "acc_a")).ok());
  auto d = f.deliveries().at(0);

  f.answer = tern::http::Response{.status = 500};
  CHECK(f.webhooks.on_delivery(f.ctx, d).code == tern::Code::kUnavailable);
  f.answer = tern::http::Response{.status = 302};
  CHECK(f.webhooks.on_delivery(f.ctx, d).code == tern::Code::kUnavailable);
  f.answer = tern::Error{tern::Code::kUnavailable, "connection refused"};
  auto e = f.webhooks.on_delivery(f.ctx, d);
  CHECK(e.code == tern::Code::kUnavailable);
  CHECK_THAT(e.message, Catch::Contains("connection refused"));
  f.answer = tern::Error{tern::Code::kDeadlineExceeded, "too slow"};
  CHECK(f.webhooks.on_delivery(f.ctx, d).code == tern::Code::kUnavailable);
  f.answer = tern::http::Response{.status = 204};
  CHECK(f.webhooks.on_delivery(f.ctx, d).ok());
  CHECK(f.fetched.size() == 5);

  CHECK(f.deregister("acc_a", hook.id()) == tern::Code::kOk);
  CHECK(f.webhooks.on_delivery(f.ctx, d).ok());
  CHECK(f.fetched.size() == 5);  // nobody to send it to
}
