// The platform's own client filters, in the order a call meets them:
// metrics (per call), deadline (per call), retries (one `next` per attempt),
// breaker and tracing (per attempt). Each holds references to state its
// Caller owns; reactor thread only.
#pragma once

#include <string>

#include "observability/span_buffer.h"
#include "rpc/client/resilience.h"
#include "tern/filter.h"

namespace tern::detail::client_filters {

// Counts calls by downstream and code, and their latency.
ClientFilter metrics(std::string name);
// Cancelled context: CANCELLED. Sets call.deadline to min(the context's,
// now + options->timeout); already past: DEADLINE_EXCEEDED without sending.
ClientFilter deadline();
// Retries retryable failures (and timed-out attempts of idempotent calls,
// and only those retry a request whose outcome is unknown) with full-jitter
// backoff, within `budget` and the deadline; sets
// call.attempt and each attempt's deadline (options->attempt_timeout).
ClientFilter retries(RetryBudget& budget, std::string name);
// Fails fast while the downstream's circuit is open; records each
// attempt's outcome. Failures of this process's own link (local.link_failed)
// say nothing about the downstream and count as successes.
ClientFilter breaker(CircuitBreakers& breakers, std::string name);
// A CLIENT span per attempt; sets the attempt's span id (sent as the
// request's span, the parent of the server's).
ClientFilter tracing(SpanBuffer& spans);

}  // namespace tern::detail::client_filters
