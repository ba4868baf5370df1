#include "handlers.h"

#include <tern/testing.h>

#include <catch2/catch.hpp>

#include "auth.pb.h"

using namespace std::chrono_literals;

TEST_CASE("POST /token hands back service.auth's token, and its refusals") {
  tern::testing::FakeTransport fake;
  fake.stub<auth::IssueTokenRequest, auth::IssueTokenResponse>(
      "service.auth", "issue_token",
      [](const auth::IssueTokenRequest& r) -> tern::Result<auth::IssueTokenResponse> {
        if (r.account_id() != "acc_demo" || r.password() != "demo")
          return tern::Error{tern::Code::kUnauthenticated, "wrong account id or password"};
        auth::IssueTokenResponse rsp;
        rsp.set_token("tok");
        rsp.set_expires_at_unix_ms(1);
        return rsp;
      });
  auto ctx = fake.context(1s);
  auth_api::TokenRequest req;
  req.set_account_id("acc_demo");
  req.set_password("demo");
  auto ok = auth_api::token(ctx, req);
  REQUIRE(ok.ok());
  CHECK(ok->token() == "tok");

  req.set_password("nope");
  CHECK(auth_api::token(ctx, req).code() == tern::Code::kUnauthenticated);
}

TEST_CASE("the token response holds exactly the field token") {
  CHECK(auth_api::TokenResponse::descriptor()->field_count() == 1);
  CHECK(auth_api::TokenResponse::descriptor()->field(0)->name() == "token");
}
