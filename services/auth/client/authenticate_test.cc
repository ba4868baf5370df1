#include "auth/authenticate.h"

#include <tern/testing.h>

#include <catch2/catch.hpp>

#include "auth.pb.h"

using namespace std::chrono_literals;

namespace {

// service.auth as a stub: "good" belongs to acc_1, anything else is refused.
void stub_auth(tern::testing::FakeTransport& fake) {
  fake.stub<auth::ValidateRequest, auth::ValidateResponse>(
      "service.auth", "validate",
      [](const auth::ValidateRequest& r) -> tern::Result<auth::ValidateResponse> {
        if (r.token() != "good") return tern::Error{tern::Code::kUnauthenticated, "invalid token"};
        auth::ValidateResponse rsp;
        rsp.set_account_id("acc_1");
        return rsp;
      });
}

}  // namespace

TEST_CASE("authenticate returns the account of a valid bearer token") {
  tern::testing::FakeTransport fake;
  stub_auth(fake);
  for (std::string header : {"Bearer good", "bearer good", "Bearer  good "}) {
    auto ctx = fake.context(1s);
    ctx.set_metadata("authorization", header);
    auto account = auth::authenticate(ctx);
    REQUIRE(account.ok());
    CHECK(*account == "acc_1");
  }
}

TEST_CASE("authenticate refuses missing, non-bearer and bad credentials") {
  tern::testing::FakeTransport fake;
  stub_auth(fake);
  auto ctx = fake.context(1s);
  CHECK(auth::authenticate(ctx).code() == tern::Code::kUnauthenticated);
  CHECK(fake.calls().empty());  // nothing to ask service.auth about
  for (std::string header : {"Basic Zm9vOmJhcg==", "Bearer", "Bearer ", "good", "Bearer bad"}) {
    ctx.set_metadata("authorization", header);
    CHECK(auth::authenticate(ctx).code() == tern::Code::kUnauthenticated);
  }
}

TEST_CASE("authenticate passes on service.auth's other failures as they are") {
  tern::testing::FakeTransport fake;  // no stub: the call fails UNAVAILABLE
  auto ctx = fake.context(1s);
  ctx.set_metadata("authorization", "Bearer good");
  CHECK(auth::authenticate(ctx).code() == tern::Code::kUnavailable);
}

TEST_CASE("an account the gateway verified is taken from the metadata, without service.auth") {
  tern::testing::FakeTransport fake;   // no stub for validate: a call to it would fail
  auto ctx = fake.context(1s);
  ctx.set_metadata(auth::kAccountKey, "acc_7");
  auto who = auth::authenticate(ctx);
  REQUIRE(who.ok());
  CHECK(*who == "acc_7");
  ctx.set_metadata(auth::kAccountKey, "");
  CHECK(auth::authenticate(ctx).code() == tern::Code::kUnauthenticated);
}
