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
  tern::http::FetchOptions options;
};

// Loopback is allow-listed, as the walk-through's receiver needs; Strict
// below keeps the default policy.
webhook::Config loopback_allowed() {
  webhook::Config c;
  c.egress = tern::http::EgressPolicy::from_list("test", "127.0.0.1/32,::1/128");
  return c;
}

struct Fixture {
  explicit Fixture(webhook::Config config = loopback_allowed())
      : webhooks{store, std::move(config),
                 [this](const tern::Context&, std::string_view url, tern::http::Request req,
                        const tern::http::FetchOptions& options) {
                   fetched.push_back({std::string(url), std::move(req), options});
                   return answer;
                 },
                 [this] { return now_ms++; }} {}
  tern::testing::FakeTransport transport;  // records published events
  tern::Context ctx = transport.context(5s);
  webhook::Store store{":memory:"};
  std::vector<Fetched> fetched;
  tern::Result<tern::http::Response> answer = tern::http::Response{};  // 200
  int64_t now_ms = 1'700'000'000'000;
  webhook::Webhooks webhooks;

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

TEST_CASE("Tern-Signature is t and the hex HMAC-SHA256 of t.body") {
  // The expected MAC is Python's: hmac.new(b"Jefe", b"1700000000.{}", hashlib.sha256).
  CHECK(webhook::sign("Jefe", 1700000000, "{}") ==
        "t=1700000000,v1=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207");
}

TEST_CASE("webhook URLs are https or http with a host") {
  for (std::string ok : {"http://127.0.0.1:9999/hook", "http://example.com", "http://h/p?q=1&r=2",
                         "http://[::1]:8080/x", "http://h:65535/", "https://example.com/hook",
                         "https://127.0.0.1:8443/hook", "https://[::1]/x"})
    CHECK(webhook::check_url(ok).ok());
  for (std::string bad : std::vector<std::string>{
           "", "ftp://h/", "HTTP://h/", "HTTPS://h/", "https:/h/", "http://", "https://", "https:///path",
           "https://h:0/", "https://user@h/", "http:///path",
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
  CHECK(listed[0].created_at_unix_ms() == 1'700'000'000'000);
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
  req.set_url("ftp://example.com/hook");
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

TEST_CASE("a delivery POSTs the body, signed with the webhook's secret and the time") {
  Fixture f;
  auto hook = f.add("acc_a", "http://127.0.0.1:9999/hook");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, created("tx_1", "acc_a")).ok());
  auto d = f.deliveries().at(0);
  f.now_ms = 1'700'000'123'456;
  REQUIRE(f.webhooks.on_delivery(f.ctx, d).ok());
  REQUIRE(f.fetched.size() == 1);
  const auto& sent = f.fetched[0];
  CHECK(sent.url == "http://127.0.0.1:9999/hook");
  CHECK(sent.request.method == "POST");
  CHECK(sent.request.body == d.body());
  REQUIRE(header(sent.request, "tern-signature") != nullptr);
  const std::string& sig = *header(sent.request, "Tern-Signature");
  CHECK(sig == webhook::sign(hook.secret(), 1'700'000'123, d.body()));
  CHECK(sig.starts_with("t=1700000123,v1="));
  CHECK(header(sent.request, "X-Tern-Signature") == nullptr);   // the body-only one is gone
  CHECK(webhook::verify(hook.secret(), sig, d.body(), 1'700'000'123) == webhook::Verdict::kValid);
  CHECK(*header(sent.request, "Content-Type") == "application/json");
  CHECK(*header(sent.request, "X-Tern-Event-Id") == "transaction.created:tx_1");
  // Through the policy, with the configured limits.
  CHECK(sent.options.egress != nullptr);
  CHECK(sent.options.connect_timeout == 3000ms);
  CHECK(sent.options.timeout == 10000ms);
  CHECK(sent.options.max_response_bytes == 64 * 1024);
  CHECK(sent.options.ca_file.empty());   // the system's CA store
}

TEST_CASE("an https delivery goes to fetch with the configured CA file") {
  webhook::Config config = loopback_allowed();
  config.ca_file = "/etc/tern/receivers-ca.pem";
  Fixture f{config};
  f.add("acc_a", "https://127.0.0.1:8443/hook");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, created("tx_1", "acc_a")).ok());
  REQUIRE(f.webhooks.on_delivery(f.ctx, f.deliveries().at(0)).ok());
  REQUIRE(f.fetched.size() == 1);
  CHECK(f.fetched[0].url == "https://127.0.0.1:8443/hook");
  CHECK(f.fetched[0].options.ca_file == "/etc/tern/receivers-ca.pem");
  CHECK(f.fetched[0].options.egress != nullptr);
}

TEST_CASE("the receiver's check refuses a replay outside the window, a changed body and another secret") {
  const std::string secret = "whsec_0123";
  const std::string body = R"({"id":"tx_1","amount":1250})";
  const int64_t t = 1'700'000'000;
  const std::string sig = webhook::sign(secret, t, body);
  using webhook::Verdict;
  CHECK(webhook::verify(secret, sig, body, t) == Verdict::kValid);
  CHECK(webhook::verify(secret, sig, body, t + webhook::kReplayWindowS) == Verdict::kValid);
  CHECK(webhook::verify(secret, sig, body, t - webhook::kReplayWindowS) == Verdict::kValid);
  // The captured delivery, sent again 5 minutes and a second later: refused.
  CHECK(webhook::verify(secret, sig, body, t + webhook::kReplayWindowS + 1) == Verdict::kStale);
  CHECK(webhook::verify(secret, sig, body, t - webhook::kReplayWindowS - 1) == Verdict::kStale);
  // A replayer who moves t forward breaks the MAC.
  const std::string moved = "t=" + std::to_string(t + 600) + sig.substr(sig.find(','));
  CHECK(webhook::verify(secret, moved, body, t + 600) == Verdict::kBadMac);
  CHECK(webhook::verify(secret, sig, body + " ", t) == Verdict::kBadMac);
  CHECK(webhook::verify("whsec_other", sig, body, t) == Verdict::kBadMac);
  // Several v1 (secrets being rotated): one match is enough.
  CHECK(webhook::verify(secret, sig + ",v1=00ff", body, t) == Verdict::kValid);
  CHECK(webhook::verify(secret, "t=1700000000,v1=00ff," + sig.substr(sig.find("v1=")), body, t) ==
        Verdict::kValid);
  for (const std::string& bad : std::vector<std::string>{"", "v1=" + std::string(64, 'a'), "t=1700000000", "t=,v1=00", "t=17x,v1=00",
                          "t=1,t=2," + sig.substr(sig.find("v1="))}) {
    INFO(bad);
    CHECK(webhook::verify(secret, bad, body, t) == Verdict::kMalformed);
  }
}

TEST_CASE("register refuses a URL whose address literal the egress policy denies, until allow-listed") {
  Fixture strict{webhook::Config{}};
  webhook::RegisterRequest req;
  req.set_account_id("acc_a");
  for (std::string url :
       {"http://127.0.0.1:9999/hook", "http://127.1:9999/", "http://2130706433/", "http://0x7f.0.0.1/",
        "http://[::1]:9999/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/",
        "http://[fc00::1]/", "http://[fe80::1]/", "http://0.0.0.0:22/", "http://224.0.0.1/"}) {
    INFO(url);
    req.set_url(url);
    auto r = strict.webhooks.register_webhook(strict.ctx, req);
    CHECK(r.code() == tern::Code::kInvalidArgument);
    if (!r.ok()) CHECK_THAT(r.error().message, Catch::Contains("which webhooks may not reach"));
  }
  CHECK(strict.list("acc_a").empty());
  // A public literal and a host name (checked once resolved, at delivery) are accepted.
  for (std::string url : {"http://93.184.216.34/hook", "http://[2606:4700::1]/", "http://localhost:9999/"}) {
    INFO(url);
    req.set_url(url);
    CHECK(strict.webhooks.register_webhook(strict.ctx, req).ok());
  }
  // Allow-listed loopback: accepted; the rest of the inward ranges still are not.
  Fixture allowed;
  req.set_url("http://127.0.0.1:9999/hook");
  CHECK(allowed.webhooks.register_webhook(allowed.ctx, req).ok());
  req.set_url("http://[::1]:9999/hook");
  CHECK(allowed.webhooks.register_webhook(allowed.ctx, req).ok());
  req.set_url("http://169.254.169.254/");
  CHECK(allowed.webhooks.register_webhook(allowed.ctx, req).code() == tern::Code::kInvalidArgument);
}

TEST_CASE("a failed delivery is UNAVAILABLE with a coarse class, never the system's reason or the peer's answer") {
  Fixture f;
  auto hook = f.add("acc_a");
  REQUIRE(f.webhooks.on_transaction_created(f.ctx, created("tx_1", "acc_a")).ok());
  auto d = f.deliveries().at(0);
  const std::string prefix = "webhook " + hook.id() + ": ";

  struct Case {
    tern::Result<tern::http::Response> answer;
    std::string failure;
  };
  auto stage = [](tern::Error e, const char* s) { return std::move(e).with_param("stage", s); };
  std::vector<Case> cases;
  cases.push_back({tern::Error{tern::Code::kPermissionDenied,
                               "refused by the egress policy: localhost resolved to 127.0.0.1 (loopback)"},
                   "refused by the egress policy"});
  cases.push_back({stage(tern::Error{tern::Code::kUnavailable,
                                     "cannot connect to 10.0.0.5:6379: Connection refused"}, "connect"),
                   "could not connect"});
  cases.push_back({stage(tern::Error{tern::Code::kUnavailable,
                                     "cannot resolve redis.internal: Name or service not known"}, "connect"),
                   "could not connect"});
  cases.push_back({tern::Error{tern::Code::kDeadlineExceeded, "connecting to 10.0.0.5:22 took too long"},
                   "timed out"});
  cases.push_back({stage(tern::Error{tern::Code::kUnavailable, "bad or no HTTP response from 10.0.0.5:22"},
                         "response"),
                   "no valid HTTP response"});
  cases.push_back({tern::Error{tern::Code::kResourceExhausted, "the response from x is too large"},
                   "response too large"});
  auto tls = [&](std::string message, std::string_view kind) {
    return stage(tern::Error{tern::Code::kUnavailable, std::move(message)}, "tls")
        .with_param("tls", std::string(kind));
  };
  cases.push_back({tls("TLS handshake: certificate verify failed: unable to get local issuer certificate "
                       "with 10.0.0.5:8443",
                       tern::http::kTlsUntrusted),
                   "TLS certificate not accepted"});
  cases.push_back({tls("TLS handshake: certificate verify failed: hostname mismatch with redis.internal",
                       tern::http::kTlsNameMismatch),
                   "TLS certificate not accepted"});
  cases.push_back({tls("TLS handshake: error:0A00010B:SSL routines::wrong version number with 10.0.0.5:22 "
                       "(OpenSSH)",
                       tern::http::kTlsHandshake),
                   "TLS handshake failed"});
  cases.push_back({tern::http::Response{.status = 500, .body = "SSH-2.0-OpenSSH_9.2 redis_version:7.0"},
                   "HTTP 5xx"});
  cases.push_back({tern::http::Response{.status = 503}, "HTTP 5xx"});
  cases.push_back({tern::http::Response{.status = 404, .body = "nginx/1.25 internal admin"}, "HTTP 4xx"});
  cases.push_back({tern::http::Response{.status = 302,
                                        .headers = {{"Location", "http://169.254.169.254/"}}},
                   "HTTP 3xx (redirects are not followed)"});
  for (const auto& c : cases) {
    f.answer = c.answer;
    auto e = f.webhooks.on_delivery(f.ctx, d);
    INFO(c.failure);
    CHECK(e.code == tern::Code::kUnavailable);
    CHECK(e.message == prefix + c.failure);
    CHECK(e.params.at("failure") == c.failure);
    for (std::string secret_of_the_inside : {"127.0.0.1", "10.0.0.5", "Connection refused", "redis",
                                             "OpenSSH", "nginx", "169.254", "Name or service",
                                             "verify failed", "issuer", "mismatch", "SSL routines"})
      CHECK_THAT(e.to_string(), !Catch::Contains(secret_of_the_inside));
  }
  f.answer = tern::http::Response{.status = 204};
  CHECK(f.webhooks.on_delivery(f.ctx, d).ok());
  CHECK(f.fetched.size() == cases.size() + 1);

  CHECK(f.deregister("acc_a", hook.id()) == tern::Code::kOk);
  CHECK(f.webhooks.on_delivery(f.ctx, d).ok());
  CHECK(f.fetched.size() == cases.size() + 1);  // nobody to send it to
}
