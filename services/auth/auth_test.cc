#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "accounts.h"
#include "common/crypto.h"
#include "config.h"
#include "handlers.h"
#include "limits.h"
#include "passwords.h"
#include "tokens.h"

using namespace std::chrono_literals;

namespace {
constexpr int64_t kNow = 1'700'000'000'000;
const std::string kSecret(40, 's');
const auth::Tokens kTokens{kSecret, 60s};

// Sets environment variables for one scope, and unsets them after.
struct Env {
  explicit Env(std::initializer_list<std::pair<const char*, std::string>> vars) {
    for (const char* name : kAll) unsetenv(name);
    for (const auto& [k, v] : vars) setenv(k, v.c_str(), 1);
  }
  ~Env() {
    for (const char* name : kAll) unsetenv(name);
  }
  static constexpr const char* kAll[] = {"TERN_AUTH_DEV", "TERN_AUTH_SECRET", "TERN_AUTH_SECRET_FILE",
                                         "TERN_AUTH_ACCOUNTS", "TERN_AUTH_CREATE_SECRET_FILE"};
};
}  // namespace

TEST_CASE("a token validates to the account it was issued to until it expires") {
  const std::string token = kTokens.issue("acc_1", kNow);
  CHECK(token.starts_with("v2." + kTokens.signing_key_id() + "."));
  auto claims = kTokens.validate(token, kNow + 1000);
  REQUIRE(claims.ok());
  CHECK(claims->account_id == "acc_1");
  CHECK(claims->expires_at_unix_ms == kNow + 60'000);
  CHECK(kTokens.validate(token, kNow + 60'000).code() == tern::Code::kUnauthenticated);
}

TEST_CASE("a tampered token, one signed with another key, or a forged key id is refused") {
  const std::string token = kTokens.issue("acc_1", kNow);
  const auth::Tokens other{std::string(40, 'o'), 60s};
  const std::string forged = other.issue("acc_1", kNow);
  CHECK(other.signing_key_id() != kTokens.signing_key_id());
  CHECK(kTokens.validate(forged, kNow).error().message == "token signed with an unknown key");
  // Another key's MAC under our key id.
  std::string relabelled = forged;
  relabelled.replace(3, 8, kTokens.signing_key_id());
  CHECK(kTokens.validate(relabelled, kNow).error().message == "invalid token");
  std::string flipped = token;
  flipped[token.size() - 1] = flipped.back() == '0' ? '1' : '0';
  CHECK(kTokens.validate(flipped, kNow).code() == tern::Code::kUnauthenticated);
  // A longer life spliced onto a valid MAC.
  const std::string later = auth::Tokens{kSecret, 3600s}.issue("acc_1", kNow);
  const std::string extended = later.substr(0, later.rfind('.')) + token.substr(token.rfind('.'));
  CHECK(kTokens.validate(extended, kNow).code() == tern::Code::kUnauthenticated);
  // The old format, and a token made with the public development secret.
  CHECK(kTokens.validate("v1.6163635f310a31.00", kNow).code() == tern::Code::kUnauthenticated);
  const std::string dev = auth::Tokens{auth::kDevSecret, 60s}.issue("acc_1", kNow);
  CHECK(kTokens.validate(dev, kNow).code() == tern::Code::kUnauthenticated);
}

TEST_CASE("keys rotate: the first signs, every one validates") {
  const std::string old_key(40, 'a'), new_key(40, 'b');
  const auth::Tokens before{{auth::Key(old_key)}, 60s};
  const auth::Tokens during{{auth::Key(new_key), auth::Key(old_key)}, 60s};
  const auth::Tokens after{{auth::Key(new_key)}, 60s};
  const std::string old_token = before.issue("acc_1", kNow), new_token = during.issue("acc_1", kNow);
  CHECK(during.validate(old_token, kNow).ok());
  CHECK(during.validate(new_token, kNow).ok());
  CHECK(after.validate(new_token, kNow).ok());
  CHECK_FALSE(after.validate(old_token, kNow).ok());
  CHECK_FALSE(before.validate(new_token, kNow).ok());
}

TEST_CASE("malformed tokens are refused, not crashed on") {
  for (const char* bad : {"", "v2.", "v2..", "v2.x", "v2.abcdefgh", "v2.abcdefgh.", "v2.abcdefgh.zz.00", "x.y.z"})
    CHECK(kTokens.validate(bad, kNow).code() == tern::Code::kUnauthenticated);
}

TEST_CASE("password hashes are salted PBKDF2, round-trip as text and match only their password") {
  const auto a = auth::PasswordHash::make("pw", 1000), b = auth::PasswordHash::make("pw", 1000);
  CHECK(a.salt != b.salt);
  CHECK(a.hash != b.hash);
  CHECK(a.hash == common::pbkdf2_sha256("pw", a.salt, 1000));
  CHECK(a.matches("pw"));
  CHECK_FALSE(a.matches("pw "));
  auto parsed = auth::PasswordHash::parse(a.to_string());
  REQUIRE(parsed.has_value());
  CHECK(parsed->matches("pw"));
  CHECK(a.to_string().starts_with("pbkdf2-sha256$1000$"));
  CHECK(auth::PasswordHash::make("pw").iterations == auth::kIterations);
  for (const char* bad : {"pbkdf2-sha256$", "pbkdf2-sha256$1000$00$00", "pbkdf2-sha256$10$0011223344556677$" ,
                          "sha256$1000$0011223344556677$00", "pbkdf2-sha256$x$0011223344556677$00"})
    CHECK_FALSE(auth::PasswordHash::parse(bad).has_value());
}

TEST_CASE("accounts hold hashes: plain-text passwords only in development mode") {
  const std::string hash = auth::PasswordHash::make("pa", 1000).to_string();
  auto accounts = auth::Accounts::parse("# header\n\nacc_a " + hash + "  # trailing\n");
  CHECK(accounts.size() == 1);
  CHECK(accounts.check("acc_a", "pa"));
  CHECK_FALSE(accounts.check("acc_a", "pb"));
  CHECK_FALSE(accounts.check("acc_c", "pa"));
  CHECK_THROWS_WITH(auth::Accounts::parse("acc_b pb\n"), Catch::Contains("plain-text password"));
  auto dev = auth::Accounts::parse("acc_b pb\n", /*allow_plain=*/true);
  CHECK(dev.check("acc_b", "pb"));
  CHECK_THROWS_WITH(auth::Accounts::parse("acc_a\n"), Catch::Contains("line 1"));
  CHECK_THROWS_WITH(auth::Accounts::parse("acc_a pbkdf2-sha256$1$2$3\n"), Catch::Contains("malformed"));
  CHECK_THROWS_WITH(auth::Accounts::parse("a " + hash + "\na " + hash + "\n"), Catch::Contains("twice"));
}

TEST_CASE("failed logins lock a key for the rest of its window, and the map stays bounded") {
  auth::FailedLogins f({.max_failures = 3, .window = 1000ms, .max_keys = 100});
  for (int i = 0; i < 3; ++i) {
    CHECK(f.retry_after_ms("k", kNow) == 0);
    f.failed("k", kNow);
  }
  CHECK(f.retry_after_ms("k", kNow + 10) == 990);
  CHECK(f.retry_after_ms("other", kNow) == 0);
  CHECK(f.retry_after_ms("k", kNow + 1000) == 0);   // the window is over
  f.failed("j", kNow);
  f.succeeded("j");
  f.failed("j", kNow);
  f.failed("j", kNow);
  CHECK(f.retry_after_ms("j", kNow) == 0);   // a success started it over
  for (int i = 0; i < 1000; ++i) f.failed("spray-" + std::to_string(i), kNow + i);
  // The oldest went: the latest key is still counted, the first is gone.
  f.failed("spray-999", kNow + 999);
  f.failed("spray-999", kNow + 999);
  CHECK(f.retry_after_ms("spray-999", kNow + 999) > 0);
}

TEST_CASE("issue_token issues for the right password only, and validate reads it back") {
  int64_t now = kNow;
  auth::Auth service{auth::Accounts::demo(), kTokens, {}, [&] { return now; }};
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

TEST_CASE("past the failed-login limit even the right password is refused, per account and per address") {
  int64_t now = kNow;
  auth::Auth service{auth::Accounts::parse("acc_a " + auth::PasswordHash::make("pa", 1000).to_string() + "\nacc_b " +
                                           auth::PasswordHash::make("pb", 1000).to_string() + "\n"),
                     kTokens, {.max_failures = 2, .window = 60s}, [&] { return now; }};
  auto ctx = tern::Context::with_timeout(5s);
  auto login = [&](const std::string& account, const std::string& password) {
    auth::IssueTokenRequest req;
    req.set_account_id(account);
    req.set_password(password);
    return service.issue_token(ctx, req);
  };
  CHECK(login("acc_a", "x").code() == tern::Code::kUnauthenticated);
  CHECK(login("acc_a", "y").code() == tern::Code::kUnauthenticated);
  auto locked = login("acc_a", "pa");
  CHECK(locked.code() == tern::Code::kResourceExhausted);
  CHECK(locked.error().params.at("retry_after_ms") == "60000");
  CHECK(login("acc_b", "pb").ok());   // another account is not locked
  now += 60'000;
  CHECK(login("acc_a", "pa").ok());
  // From one address, guesses at different accounts add up.
  ctx.set_metadata(auth::kClientAddress, "192.0.2.7");
  CHECK(login("acc_a", "x").code() == tern::Code::kUnauthenticated);
  CHECK(login("acc_b", "x").code() == tern::Code::kUnauthenticated);
  CHECK(login("acc_b", "pb").code() == tern::Code::kResourceExhausted);
  ctx.set_metadata(auth::kClientAddress, "192.0.2.8");
  CHECK(login("acc_b", "pb").ok());
}

TEST_CASE("the configuration refuses to start without a strong secret unless in development mode") {
  const std::string accounts = "/tmp/auth-test-accounts-" + std::to_string(getpid());
  {
    Env e({{"TERN_AUTH_ACCOUNTS", accounts}});
    CHECK_THROWS_WITH(auth::Config::from_env("x"), Catch::Contains("TERN_AUTH_SECRET or TERN_AUTH_SECRET_FILE"));
  }
  {
    Env e({{"TERN_AUTH_SECRET", kSecret}});
    CHECK_THROWS_WITH(auth::Config::from_env("x"), Catch::Contains("TERN_AUTH_ACCOUNTS is required"));
  }
  {
    Env e({{"TERN_AUTH_ACCOUNTS", accounts}, {"TERN_AUTH_SECRET", "short"}});
    CHECK_THROWS_WITH(auth::Config::from_env("x"), Catch::Contains("at least 32"));
  }
  {
    Env e({{"TERN_AUTH_ACCOUNTS", accounts}, {"TERN_AUTH_SECRET", auth::kDevSecret}});
    CHECK_THROWS_WITH(auth::Config::from_env("x"), Catch::Contains("development secret"));
  }
  {
    Env e({{"TERN_AUTH_ACCOUNTS", accounts}, {"TERN_AUTH_SECRET", kSecret}, {"TERN_AUTH_SECRET_FILE", "/x"}});
    CHECK_THROWS_WITH(auth::Config::from_env("x"), Catch::Contains("both set"));
  }
  {
    const std::string file = accounts + ".keys";
    std::ofstream(file) << "# newest first\n" << std::string(40, 'n') << "\n\n" << std::string(40, 'o') << "\n";
    Env e({{"TERN_AUTH_ACCOUNTS", accounts}, {"TERN_AUTH_SECRET_FILE", file}});
    auto c = auth::Config::from_env("x");
    std::remove(file.c_str());
    CHECK(c.secrets == std::vector<std::string>{std::string(40, 'n'), std::string(40, 'o')});
    CHECK_FALSE(c.dev);
    CHECK_THROWS_WITH(auth::load_accounts(c), Catch::Contains("no file"));
  }
  {
    Env e({{"TERN_AUTH_DEV", "1"}});
    auto c = auth::Config::from_env("/no/such/accounts");
    CHECK(c.dev);
    CHECK(c.secrets == std::vector<std::string>{auth::kDevSecret});
    CHECK(auth::load_accounts(c).check("acc_demo", "demo"));
  }
  {
    // Made once, then kept: a second start reads the first one's secret.
    const std::string file = accounts + ".made";
    std::remove(file.c_str());
    Env e({{"TERN_AUTH_ACCOUNTS", accounts}, {"TERN_AUTH_SECRET_FILE", file}, {"TERN_AUTH_CREATE_SECRET_FILE", "1"}});
    const auto first = auth::Config::from_env("x").secrets;
    const auto second = auth::Config::from_env("x").secrets;
    std::ifstream made(file);
    std::string line;
    std::getline(made, line);
    std::remove(file.c_str());
    REQUIRE(first.size() == 1);
    CHECK(first[0].size() == 64);
    CHECK(first == second);
    CHECK(line == first[0]);
  }
  {
    Env e({{"TERN_AUTH_DEV", "yes"}});
    CHECK_THROWS_WITH(auth::Config::from_env("x"), Catch::Contains("TERN_AUTH_DEV"));
  }
}
