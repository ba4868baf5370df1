#include "handlers.h"

#include <tern/testing.h>

#include <catch2/catch.hpp>

#include "auth.pb.h"

using namespace std::chrono_literals;

namespace {

// service.auth and service.webhook as stubs that record the accounts asked for.
struct Fixture {
  tern::testing::FakeTransport fake;
  std::vector<std::string> calls;  // "<endpoint> <account_id> <detail>"

  Fixture() {
    fake.stub<auth::ValidateRequest, auth::ValidateResponse>(
        "service.auth", "validate",
        [](const auth::ValidateRequest& r) -> tern::Result<auth::ValidateResponse> {
          if (r.token() != "tok_1")
            return tern::Error{tern::Code::kUnauthenticated, "invalid token"};
          auth::ValidateResponse rsp;
          rsp.set_account_id("acc_1");
          return rsp;
        });
    fake.stub<webhook::RegisterRequest, webhook::RegisterResponse>(
        "service.webhook", "register",
        [this](const webhook::RegisterRequest& r) -> tern::Result<webhook::RegisterResponse> {
          calls.push_back("register " + r.account_id() + " " + r.url());
          webhook::RegisterResponse rsp;
          rsp.set_id("wh_1");
          rsp.set_secret("whsec_1");
          return rsp;
        });
    fake.stub<webhook::ListRequest, webhook::ListResponse>(
        "service.webhook", "list",
        [this](const webhook::ListRequest& r) -> tern::Result<webhook::ListResponse> {
          calls.push_back("list " + r.account_id());
          webhook::ListResponse rsp;
          rsp.add_webhooks()->set_id("wh_1");
          return rsp;
        });
    fake.stub<webhook::DeregisterRequest, webhook::DeregisterResponse>(
        "service.webhook", "deregister",
        [this](const webhook::DeregisterRequest& r) -> tern::Result<webhook::DeregisterResponse> {
          calls.push_back("deregister " + r.account_id() + " " + r.id());
          if (r.id() != "wh_1") return tern::Error{tern::Code::kNotFound, "no webhook " + r.id()};
          return webhook::DeregisterResponse{};
        });
  }
  tern::Context ctx(std::string authorization) {
    auto c = fake.context(1s);
    if (!authorization.empty()) c.set_metadata("authorization", authorization);
    return c;
  }
};

}  // namespace

TEST_CASE("register, list and deregister act on the token's account") {
  Fixture f;
  // Each request has a context of its own (authenticate takes the token out).
  auto ctx = f.ctx("Bearer tok_1");
  webhook_api::RegisterRequest reg;
  reg.set_url("http://127.0.0.1:9999/hook");
  auto r = webhook_api::register_webhook(ctx, reg);
  CHECK(ctx.metadata().count("authorization") == 0);
  REQUIRE(r.ok());
  CHECK(r->id() == "wh_1");
  CHECK(r->secret() == "whsec_1");
  ctx = f.ctx("Bearer tok_1");
  auto l = webhook_api::list(ctx, {});
  REQUIRE(l.ok());
  CHECK(l->webhooks_size() == 1);
  webhook_api::DeregisterRequest del;
  del.set_id("wh_1");
  ctx = f.ctx("Bearer tok_1");
  CHECK(webhook_api::deregister(ctx, del).ok());
  del.set_id("wh_2");
  ctx = f.ctx("Bearer tok_1");
  CHECK(webhook_api::deregister(ctx, del).code() == tern::Code::kNotFound);
  CHECK(f.calls == std::vector<std::string>{"register acc_1 http://127.0.0.1:9999/hook",
                                            "list acc_1", "deregister acc_1 wh_1",
                                            "deregister acc_1 wh_2"});
}

TEST_CASE("without a valid token nothing reaches service.webhook") {
  Fixture f;
  for (std::string header : {"", "Bearer other", "Basic dTpw"}) {
    auto ctx = f.ctx(header);
    CHECK(webhook_api::register_webhook(ctx, {}).code() == tern::Code::kUnauthenticated);
    CHECK(webhook_api::list(ctx, {}).code() == tern::Code::kUnauthenticated);
    CHECK(webhook_api::deregister(ctx, {}).code() == tern::Code::kUnauthenticated);
  }
  CHECK(f.calls.empty());
}

TEST_CASE("the api's requests have no account field, and DELETE's path param is the field id") {
  CHECK(webhook_api::RegisterRequest::descriptor()->FindFieldByName("account_id") == nullptr);
  CHECK(webhook_api::DeregisterRequest::descriptor()->FindFieldByName("account_id") == nullptr);
  CHECK(webhook_api::DeregisterRequest::descriptor()->FindFieldByName("id") != nullptr);
}
