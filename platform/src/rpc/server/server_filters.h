// The platform's own server filters, in the order a request meets them:
// observe (metrics and the SERVER span), deadline, known endpoint, rate
// limit; then the user's filters; then replay (idempotency keys), right
// before the handler. Built per reactor thread (observe holds that
// thread's span buffer); the definition they read is shared.
#pragma once

#include "observability/span_buffer.h"
#include "rpc/server/definition.h"
#include "rpc/server/replay.h"
#include "tern/filter.h"

namespace tern::detail::server_filters {

// Counts requests by endpoint (unknown ones under "(unknown)") and code,
// their latency, and records the request's SERVER span.
ServerFilter observe(const ServiceDefinition& def, SpanBuffer& spans);
// DEADLINE_EXCEEDED without running anything once the deadline has passed.
ServerFilter deadline(const ServiceDefinition& def);
// UNIMPLEMENTED for an endpoint the service does not have.
ServerFilter known_endpoint(const ServiceDefinition& def);
// RESOURCE_EXHAUSTED over the endpoint's Service::rate_limit.
ServerFilter rate_limit(const ServiceDefinition& def);
// PERMISSION_DENIED for a verified caller the endpoint does not allow.
ServerFilter allowed_callers(const ServiceDefinition& def);
// Idempotent replay of requests that carry a key (no store: none).
ServerFilter replay(Replay* replay);

}  // namespace tern::detail::server_filters
