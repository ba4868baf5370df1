#include "handlers.h"

#include <tern/testing.h>

#include <catch2/catch.hpp>

#include "auth.pb.h"

using namespace std::chrono_literals;

namespace {

struct Fixture {
  tern::testing::FakeTransport fake;
  std::vector<transaction::CreateRequest> created;
  std::vector<transaction::GetRequest> got;

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
    fake.stub<transaction::CreateRequest, transaction::Transaction>(
        "service.transaction", "create",
        [this](const transaction::CreateRequest& r) -> tern::Result<transaction::Transaction> {
          created.push_back(r);
          transaction::Transaction tx;
          tx.set_id("tx_1");
          tx.set_account_id(r.account_id());
          tx.set_amount(r.amount());
          return tx;
        });
    fake.stub<transaction::GetRequest, transaction::Transaction>(
        "service.transaction", "get",
        [this](const transaction::GetRequest& r) -> tern::Result<transaction::Transaction> {
          got.push_back(r);
          return tern::Error{tern::Code::kNotFound, "no transaction " + r.id()};
        });
  }
  tern::Context ctx(std::string authorization) {
    auto c = fake.context(1s);
    if (!authorization.empty()) c.set_metadata("authorization", authorization);
    return c;
  }
};

}  // namespace

TEST_CASE("POST / creates for the account of the token") {
  Fixture f;
  auto ctx = f.ctx("Bearer tok_1");
  transaction_api::CreateRequest req;
  req.set_amount(1250);
  req.set_currency("GBP");
  req.set_description("coffee");
  auto tx = transaction_api::create(ctx, req);
  REQUIRE(tx.ok());
  CHECK(tx->id() == "tx_1");
  REQUIRE(f.created.size() == 1);
  CHECK(f.created[0].account_id() == "acc_1");
  CHECK(f.created[0].amount() == 1250);
  CHECK(f.created[0].currency() == "GBP");
  CHECK(f.created[0].description() == "coffee");
}

TEST_CASE("the api's create request has no account field: the token decides") {
  CHECK(transaction_api::CreateRequest::descriptor()->FindFieldByName("account_id") == nullptr);
}

TEST_CASE("without a valid token nothing reaches service.transaction") {
  Fixture f;
  for (std::string header : {"", "Bearer nope", "tok_1"}) {
    auto ctx = f.ctx(header);
    CHECK(transaction_api::create(ctx, {}).code() == tern::Code::kUnauthenticated);
    CHECK(transaction_api::get(ctx, {}).code() == tern::Code::kUnauthenticated);
  }
  CHECK(f.created.empty());
  CHECK(f.got.empty());
}

TEST_CASE("GET /:id asks for the id within the caller's account") {
  Fixture f;
  auto ctx = f.ctx("Bearer tok_1");
  transaction_api::GetRequest req;
  req.set_id("tx_9");
  CHECK(transaction_api::get(ctx, req).code() == tern::Code::kNotFound);
  REQUIRE(f.got.size() == 1);
  CHECK(f.got[0].account_id() == "acc_1");
  CHECK(f.got[0].id() == "tx_9");
}

TEST_CASE("POST / passes the request's idempotency key on to create, scoped by the account") {
  Fixture f;
  auto ctx = f.ctx("Bearer tok_1");
  ctx.set_idempotency_key("gw:key-1");
  REQUIRE(transaction_api::create(ctx, {}).ok());
  auto unkeyed = f.ctx("Bearer tok_1");
  REQUIRE(transaction_api::create(unkeyed, {}).ok());
  std::vector<std::string> keys;
  for (const auto& c : f.fake.calls())
    if (c.endpoint == "create") keys.push_back(c.idempotency_key);
  CHECK(keys == std::vector<std::string>{"acc_1/gw:key-1", ""});
}
