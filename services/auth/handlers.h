// service.auth's endpoints, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "accounts.h"
#include "auth.pb.h"
#include "limits.h"
#include "tokens.h"

namespace auth {

// Unix milliseconds now; tests pass their own clock.
using Clock = std::function<int64_t()>;
int64_t system_now_unix_ms();

// The metadata key the gateway puts the HTTP client's address under.
inline constexpr const char* kClientAddress = "client_address";

// Thread-safe: handlers may run on any thread at once.
class Auth {
 public:
  Auth(Accounts accounts, Tokens tokens, LimitOptions limits = {}, Clock now = system_now_unix_ms)
      : accounts_(std::move(accounts)),
        tokens_(std::move(tokens)),
        failures_(std::make_unique<FailedLogins>(limits)),
        now_(std::move(now)) {}

  // account_id + password -> a token. INVALID_ARGUMENT if either is empty,
  // UNAUTHENTICATED if they do not match (the same answer for an unknown
  // account as for a wrong password). Past the failed-login limit of the
  // account or of the client's address (ctx metadata kClientAddress):
  // RESOURCE_EXHAUSTED with retry_after_ms, without checking the password.
  // The KDF runs off the loop thread (common::offload).
  tern::Result<IssueTokenResponse> issue_token(tern::Context& ctx, const IssueTokenRequest& req) const;
  // token -> the account id it was issued to. UNAUTHENTICATED if the token
  // is malformed, tampered with, signed with an unknown key or expired.
  tern::Result<ValidateResponse> validate(tern::Context& ctx, const ValidateRequest& req) const;

  const std::string& signing_key_id() const { return tokens_.signing_key_id(); }

 private:
  Accounts accounts_;
  Tokens tokens_;
  std::unique_ptr<FailedLogins> failures_;
  Clock now_;
};

}  // namespace auth
