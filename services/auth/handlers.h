// service.auth's endpoints, apart from the bus.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include <cstdint>
#include <functional>

#include "accounts.h"
#include "auth.pb.h"
#include "tokens.h"

namespace auth {

// Unix milliseconds now; tests pass their own clock.
using Clock = std::function<int64_t()>;
int64_t system_now_unix_ms();

// Immutable after construction: handlers may run on any thread at once.
class Auth {
 public:
  Auth(Accounts accounts, Tokens tokens, Clock now = system_now_unix_ms)
      : accounts_(std::move(accounts)), tokens_(std::move(tokens)), now_(std::move(now)) {}

  // account_id + password -> a token. INVALID_ARGUMENT if either is empty,
  // UNAUTHENTICATED if they do not match (the same answer for an unknown
  // account as for a wrong password).
  tern::Result<IssueTokenResponse> issue_token(tern::Context& ctx,
                                               const IssueTokenRequest& req) const;
  // token -> the account id it was issued to. UNAUTHENTICATED if the token
  // is malformed, tampered with, signed with another secret or expired.
  tern::Result<ValidateResponse> validate(tern::Context& ctx, const ValidateRequest& req) const;

 private:
  Accounts accounts_;
  Tokens tokens_;
  Clock now_;
};

}  // namespace auth
