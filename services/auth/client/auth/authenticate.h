// For the api services: who is calling. Link the library auth_client.
#pragma once

#include <tern/context.h>
#include <tern/error.h>

#include <string>

namespace auth {

// The request metadata key that holds the caller's credentials: the gateway
// copies the HTTP Authorization header there.
inline constexpr const char* kAuthorizationKey = "authorization";

// The account id of the caller of the request `ctx` belongs to. Reads
// "Bearer <token>" from ctx's metadata and validates the token with
// service.auth (within ctx's deadline). UNAUTHENTICATED if the metadata is
// missing or not a bearer token, or the token is bad or expired; any other
// failure of service.auth (UNAVAILABLE, DEADLINE_EXCEEDED...) as it came.
// The credentials are taken out of ctx's metadata first, so the token goes
// no further: not to downstream calls, events or dead-letter queues.
tern::Result<std::string> authenticate(tern::Context& ctx);

}  // namespace auth
