// The HTTP gateway: an HTTP request in, a tern call out, its reply back as
// JSON. Which service: the route table; which endpoint and request type:
// the routes and descriptors the service gives in _describe, cached.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "rate_limit.h"
#include "router.h"
#include "tern/context.h"
#include "tern/error.h"
#include "tern/http.h"
#include "tern/metrics.h"

namespace gateway {

struct Config {
  // TERN_GATEWAY_TIMEOUT_MS: each request's deadline; a request may ask for
  // less with the header X-Tern-Timeout-Ms.
  std::chrono::milliseconds timeout{10000};
  // How long a service's description (routes, types) is reused.
  std::chrono::milliseconds describe_ttl{10000};
  // TERN_GATEWAY_RATE_PER_ADDRESS / _BURST_PER_ADDRESS: requests per client
  // address (the TCP peer), checked before any other work.
  RateLimit per_address{.per_second = 1000, .burst = 2000};
  // TERN_GATEWAY_RATE_PER_ACCOUNT / _BURST_PER_ACCOUNT: requests per account,
  // checked once its bearer token is validated.
  RateLimit per_account{.per_second = 1000, .burst = 2000};
};

// The HTTP answer for a tern error, as JSON: {"error":{"code","message",
// "params"}} with the status from tern::http_status, or 405 with Allow when
// this gateway's router found the path but not the method (Error::local,
// which no downstream reply can set).
tern::http::Response error_response(const tern::Error& e);

// The longest Idempotency-Key header accepted (Stripe's limit).
inline constexpr size_t kMaxIdempotencyKeyBytes = 255;

// The idempotency key a request's calls carry for its `Idempotency-Key`
// header: the header, scoped by a digest of the caller's account (the one
// its token named; none counts as one caller), so two accounts' equal keys
// never meet, and one account's retry with a fresh token is the same key.
// INVALID_ARGUMENT for an empty or too long key, or one with characters
// outside printable ASCII.
tern::Result<std::string> idempotency_key(const std::string& header, const std::string& account);

class Gateway {
 public:
  Gateway(RouteTable table, Config config);
  ~Gateway();

  // The http::Handler: runs in the connection's fiber; thread-safe.
  tern::http::Response handle(tern::Context& ctx, tern::http::Request& req);

 private:
  struct Described;
  tern::Result<std::shared_ptr<const Described>> describe(const tern::Context& ctx,
                                                          const std::string& service, bool refresh);
  // *route_template: the route that matched ("/webhooks/:id"), once one has.
  tern::http::Response route(tern::Context& ctx, tern::http::Request& req, const std::string& request_id,
                             const std::string& address, std::string* route_template);

  const RouteTable table_;
  const Config config_;
  RateLimiter per_address_;
  RateLimiter per_account_;
  tern::metrics::Counter& limited_address_;   // tern_gateway_rate_limited_total{scope=...}
  tern::metrics::Counter& limited_account_;
  std::mutex mu_;   // guards cache_; never held across a call
  std::map<std::string, std::shared_ptr<const Described>> cache_;
};

}  // namespace gateway
