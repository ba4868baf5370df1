#include "handlers.h"

#include <tern/call.h>

#include "auth.pb.h"

namespace auth_api {

tern::Result<TokenResponse> token(tern::Context& ctx, const TokenRequest& req) {
  auth::IssueTokenRequest issue;
  issue.set_account_id(req.account_id());
  issue.set_password(req.password());
  auto issued = tern::call<auth::IssueTokenResponse>(ctx, "service.auth", "issue_token", issue);
  if (!issued.ok()) return issued.error();
  TokenResponse rsp;
  rsp.set_token(issued->token());
  return rsp;
}

}  // namespace auth_api
