#include "handlers.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "common/offload.h"

namespace auth {

int64_t system_now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

tern::Result<IssueTokenResponse> Auth::issue_token(tern::Context& ctx, const IssueTokenRequest& req) const {
  if (req.account_id().empty() || req.password().empty())
    return tern::Error{tern::Code::kInvalidArgument, "account_id and password are required"};
  const std::string account_key = "account:" + req.account_id();
  const auto address = ctx.metadata().find(kClientAddress);
  const std::string address_key = address != ctx.metadata().end() ? "address:" + address->second : std::string();
  const int64_t now = now_();
  int64_t wait = failures_->retry_after_ms(account_key, now);
  if (!address_key.empty()) wait = std::max(wait, failures_->retry_after_ms(address_key, now));
  if (wait > 0)
    return tern::Error{tern::Code::kResourceExhausted, "too many failed logins: try again later"}.with_param(
        "retry_after_ms", std::to_string(wait));
  const bool ok = common::offload([&] { return accounts_.check(req.account_id(), req.password()); });
  if (!ok) {
    failures_->failed(account_key, now);
    if (!address_key.empty()) failures_->failed(address_key, now);
    return tern::Error{tern::Code::kUnauthenticated, "wrong account id or password"};
  }
  failures_->succeeded(account_key);   // not the address's: one good account must not reset its count
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
