#include "handlers.h"

#include <chrono>

namespace auth {

int64_t system_now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

tern::Result<IssueTokenResponse> Auth::issue_token(tern::Context&,
                                                   const IssueTokenRequest& req) const {
  if (req.account_id().empty() || req.password().empty())
    return tern::Error{tern::Code::kInvalidArgument, "account_id and password are required"};
  if (!accounts_.check(req.account_id(), req.password()))
    return tern::Error{tern::Code::kUnauthenticated, "wrong account id or password"};
  const int64_t now = now_();
  IssueTokenResponse rsp;
  rsp.set_token(tokens_.issue(req.account_id(), now));
  rsp.set_expires_at_unix_ms(now + std::chrono::milliseconds(tokens_.ttl()).count());
  return rsp;
}

tern::Result<ValidateResponse> Auth::validate(tern::Context&, const ValidateRequest& req) const {
  auto claims = tokens_.validate(req.token(), now_());
  if (!claims.ok()) return claims.error();
  ValidateResponse rsp;
  rsp.set_account_id(claims->account_id);
  rsp.set_expires_at_unix_ms(claims->expires_at_unix_ms);
  return rsp;
}

}  // namespace auth
