// For the gateway and the api services: who is calling. Link the library
// auth_client.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include <string>
#include <string_view>

namespace auth {

// The request metadata key of credentials a direct caller (the tern CLI)
// sends: "Bearer <token>".
inline constexpr const char* kAuthorizationKey = "authorization";
// The metadata key of the account the gateway verified: the gateway
// exchanges the HTTP request's bearer token for it, and the token goes no
// further (not to downstream calls, events, dead letters, spans or logs).
inline constexpr const char* kAccountKey = "account_id";

// The account id a bearer credential ("Bearer <token>", the scheme in any
// case) names, validated with service.auth within ctx's deadline.
// UNAUTHENTICATED if it is not a bearer token, or the token is bad or
// expired; any other failure of service.auth as it came.
tern::Result<std::string> account_of(const tern::Context& ctx, std::string_view credentials);

// The account id of the caller of the request `ctx` belongs to: the one the
// gateway verified (metadata kAccountKey), or else a direct caller's bearer
// token (metadata kAuthorizationKey), validated, then taken out of ctx's
// metadata so it goes no further. UNAUTHENTICATED without either.
// With TERN_AUTH_GATEWAY_USER set (the gateway's broker user), an account
// in the metadata is believed only from a request that user sent
// (ctx.caller(), as the broker verified it); unset, from any caller.
// scripts/up, docker compose and the walk-through set it to
// service.gateway, each service logging in as its own broker user.
tern::Result<std::string> authenticate(tern::Context& ctx);

}  // namespace auth
