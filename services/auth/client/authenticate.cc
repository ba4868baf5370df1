#include "auth/authenticate.h"

#include <strings.h>
#include <tern/call.h>

#include "auth.pb.h"

namespace auth {

tern::Result<std::string> authenticate(tern::Context& ctx) {
  constexpr std::string_view kScheme = "bearer ";
  auto it = ctx.metadata().find(kAuthorizationKey);
  if (it == ctx.metadata().end())
    return tern::Error{tern::Code::kUnauthenticated,
                       "no credentials: send Authorization: Bearer <token>"};
  const std::string credentials = it->second;
  ctx.erase_metadata(kAuthorizationKey);
  std::string_view value = credentials;
  if (value.size() <= kScheme.size() ||
      strncasecmp(value.data(), kScheme.data(), kScheme.size()) != 0)
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

}  // namespace auth
