#include "handlers.h"

#include <tern/testing.h>

#include <catch2/catch.hpp>

#include "auth.pb.h"

using namespace std::chrono_literals;

namespace {

void stubs(tern::testing::FakeTransport& fake, std::vector<std::string>* asked) {
  fake.stub<auth::ValidateRequest, auth::ValidateResponse>(
      "service.auth", "validate",
      [](const auth::ValidateRequest& r) -> tern::Result<auth::ValidateResponse> {
        if (r.token() != "tok_1") return tern::Error{tern::Code::kUnauthenticated, "invalid token"};
        auth::ValidateResponse rsp;
        rsp.set_account_id("acc_1");
        return rsp;
      });
  fake.stub<balance::GetRequest, balance::Balance>(
      "service.balance", "get",
      [asked](const balance::GetRequest& r) -> tern::Result<balance::Balance> {
        asked->push_back(r.account_id());
        balance::Balance b;
        b.set_balance(1250);
        b.set_currency("GBP");
        return b;
      });
}

}  // namespace

TEST_CASE("GET / answers the balance of the token's account") {
  tern::testing::FakeTransport fake;
  std::vector<std::string> asked;
  stubs(fake, &asked);
  auto ctx = fake.context(1s);
  ctx.set_metadata("authorization", "Bearer tok_1");
  auto b = balance_api::get(ctx, {});
  REQUIRE(b.ok());
  CHECK(b->balance() == 1250);
  CHECK(b->currency() == "GBP");
  CHECK(asked == std::vector<std::string>{"acc_1"});
}

TEST_CASE("GET / without a valid token is UNAUTHENTICATED and asks service.balance nothing") {
  tern::testing::FakeTransport fake;
  std::vector<std::string> asked;
  stubs(fake, &asked);
  auto ctx = fake.context(1s);
  CHECK(balance_api::get(ctx, {}).code() == tern::Code::kUnauthenticated);
  ctx.set_metadata("authorization", "Bearer forged");
  CHECK(balance_api::get(ctx, {}).code() == tern::Code::kUnauthenticated);
  CHECK(asked.empty());
}

TEST_CASE("the balance response holds exactly balance and currency") {
  const auto* d = balance::Balance::descriptor();
  REQUIRE(d->field_count() == 2);
  CHECK(d->field(0)->name() == "balance");
  CHECK(d->field(1)->name() == "currency");
}
