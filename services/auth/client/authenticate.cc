#include "auth/authenticate.h"

#include <strings.h>
#include <tern/call.h>
#include <tern/env.h>

#include "auth.pb.h"

namespace auth {
namespace {
const std::string& gateway_user() {
  static const std::string user = tern::env::string("TERN_AUTH_GATEWAY_USER", "");
  return user;
}
// Read when the program starts, not at its first request, so that the
// --help of every service that authenticates lists it.
[[maybe_unused]] const bool g_read_at_start = (gateway_user(), true);
}  // namespace

tern::Result<std::string> account_of(const tern::Context& ctx, std::string_view value) {
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() || strncasecmp(value.data(), kScheme.data(), kScheme.size()) != 0)
    return tern::Error{tern::Code::kUnauthenticated, "Authorization is not a bearer token"};
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  ValidateRequest req;
  req.set_token(std::string(value));
  auto rsp = tern::call<ValidateResponse>(ctx, "service.auth", "validate", req);
  if (!rsp.ok()) return rsp.error();
  return rsp->account_id();
}

tern::Result<std::string> authenticate(tern::Context& ctx) {
  if (auto it = ctx.metadata().find(kAccountKey); it != ctx.metadata().end()) {
    if (!gateway_user().empty() && ctx.caller() != gateway_user())
      return tern::Error{tern::Code::kUnauthenticated, "an account in the metadata, not from the gateway"};
    if (it->second.empty()) return tern::Error{tern::Code::kUnauthenticated, "an empty account"};
    return it->second;
  }
  // A request's credentials arrive in ctx.credential() (the platform keeps
  // them out of what travels on); a context made in-process may carry one
  // in its metadata, which is taken out once read.
  std::string credentials;
  if (const std::string* c = ctx.credential(kAuthorizationKey)) {
    credentials = *c;
  } else if (auto it = ctx.metadata().find(kAuthorizationKey); it != ctx.metadata().end()) {
    credentials = it->second;
    ctx.erase_metadata(kAuthorizationKey);
  } else {
    return tern::Error{tern::Code::kUnauthenticated, "no credentials: send Authorization: Bearer <token>"};
  }
  return account_of(ctx, credentials);
}

}  // namespace auth
