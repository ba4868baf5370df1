#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "accounts.h"
#include "handlers.h"
#include "tokens.h"

using namespace std::chrono_literals;

namespace {
constexpr int64_t kNow = 1'700'000'000'000;
const auth::Tokens kTokens{"test-secret", 60s};
}  // namespace

TEST_CASE("a token validates to the account it was issued to until it expires") {
  const std::string token = kTokens.issue("acc_1", kNow);
  auto claims = kTokens.validate(token, kNow + 1000);
  REQUIRE(claims.ok());
  CHECK(claims->account_id == "acc_1");
  CHECK(claims->expires_at_unix_ms == kNow + 60'000);

  auto late = kTokens.validate(token, kNow + 60'000);
  REQUIRE_FALSE(late.ok());
  CHECK(late.code() == tern::Code::kUnauthenticated);
  CHECK(late.error().message == "token expired");
}

TEST_CASE("a tampered token, or one signed with another secret, is refused") {
  const std::string token = kTokens.issue("acc_1", kNow);
  // Another account id in the payload, signature unchanged.
  const auth::Tokens other{"another-secret", 60s};
  const std::string forged = other.issue("acc_2", kNow);
  const std::string spliced = forged.substr(0, forged.rfind('.')) + token.substr(token.rfind('.'));
  CHECK(kTokens.validate(spliced, kNow).code() == tern::Code::kUnauthenticated);
  CHECK(kTokens.validate(forged, kNow).code() == tern::Code::kUnauthenticated);
  // One character of the signature changed.
  std::string flipped = token;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  CHECK(kTokens.validate(flipped, kNow).code() == tern::Code::kUnauthenticated);
  // An expiry pushed later needs a new signature.
  const std::string later = auth::Tokens{"test-secret", 3600s}.issue("acc_1", kNow);
  const std::string extended = later.substr(0, later.rfind('.')) + token.substr(token.rfind('.'));
  CHECK(kTokens.validate(extended, kNow).code() == tern::Code::kUnauthenticated);
}

TEST_CASE("malformed tokens are refused, not crashed on") {
  for (std::string bad : {"", "v1.", "v1..", "v2.abcd.ef", "nonsense", "v1.zz.00", "Bearer x"})
    CHECK(kTokens.validate(bad, kNow).code() == tern::Code::kUnauthenticated);
}

TEST_CASE("accounts parse from lines, with comments, and refuse malformed lines") {
  auto accounts = auth::Accounts::parse("# header\n\nacc_a pa  # trailing\n  acc_b pb\n");
  CHECK(accounts.size() == 2);
  CHECK(accounts.check("acc_a", "pa"));
  CHECK(accounts.check("acc_b", "pb"));
  CHECK_FALSE(accounts.check("acc_a", "pb"));
  CHECK_FALSE(accounts.check("acc_a", "pa "));
  CHECK_FALSE(accounts.check("acc_c", "pa"));
  CHECK_FALSE(accounts.check("acc_a", ""));
  CHECK_THROWS_WITH(auth::Accounts::parse("acc_a\n"), Catch::Contains("line 1"));
  CHECK_THROWS_WITH(auth::Accounts::parse("a b\nc d e\n"), Catch::Contains("line 2"));
  CHECK_THROWS_WITH(auth::Accounts::parse("a b\na c\n"), Catch::Contains("twice"));
}

TEST_CASE("accounts load from a file, and a missing file is nullopt") {
  const std::string path = "/tmp/auth-test-accounts-" + std::to_string(getpid());
  std::ofstream(path) << "acc_x px\n";
  auto loaded = auth::Accounts::load(path);
  std::remove(path.c_str());
  REQUIRE(loaded.has_value());
  CHECK(loaded->check("acc_x", "px"));
  CHECK_FALSE(auth::Accounts::load(path).has_value());
  CHECK(auth::Accounts::demo().check("acc_demo", "demo"));
}

TEST_CASE("issue_token issues for the right password only, and validate reads it back") {
  int64_t now = kNow;
  auth::Auth service{auth::Accounts::demo(), kTokens, [&] { return now; }};
  auto ctx = tern::Context::with_timeout(1s);

  auth::IssueTokenRequest req;
  req.set_account_id("acc_demo");
  req.set_password("wrong");
  CHECK(service.issue_token(ctx, req).code() == tern::Code::kUnauthenticated);
  req.set_account_id("acc_nobody");
  CHECK(service.issue_token(ctx, req).code() == tern::Code::kUnauthenticated);
  req.set_password("");
  CHECK(service.issue_token(ctx, req).code() == tern::Code::kInvalidArgument);

  req.set_account_id("acc_demo");
  req.set_password("demo");
  auto issued = service.issue_token(ctx, req);
  REQUIRE(issued.ok());
  CHECK(issued->expires_at_unix_ms() == kNow + 60'000);

  auth::ValidateRequest v;
  v.set_token(issued->token());
  auto valid = service.validate(ctx, v);
  REQUIRE(valid.ok());
  CHECK(valid->account_id() == "acc_demo");

  now += 61'000;
  CHECK(service.validate(ctx, v).code() == tern::Code::kUnauthenticated);
}
