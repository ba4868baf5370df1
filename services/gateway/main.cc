// The HTTP gateway: HTTP/1.1 in front of the services. See README.md.
#include <algorithm>

#include "gateway.h"
#include "tern/env.h"
#include "tern/log.h"
#include "tern/service.h"

namespace {

// TERN_GATEWAY_RATE_PER_<SCOPE> (requests/s, 0: off) and
// TERN_GATEWAY_BURST_PER_<SCOPE> (default: twice the rate).
gateway::RateLimit rate_limit(const std::string& scope, gateway::RateLimit limit) {
  const std::string rate = "TERN_GATEWAY_RATE_PER_" + scope, burst = "TERN_GATEWAY_BURST_PER_" + scope;
  limit.per_second = tern::env::integer(rate.c_str(), limit.per_second, 0, 1'000'000'000);
  limit.burst = tern::env::integer(burst.c_str(), std::max<int64_t>(1, 2 * limit.per_second), 1, 1'000'000'000);
  return limit;
}

}  // namespace

int main(int argc, char** argv) {
  tern::log::set_process_name("service.gateway");
  using std::chrono::milliseconds;
  gateway::Config config;
  tern::http::ServerOptions http;
  std::unique_ptr<gateway::Gateway> gw;
  try {
    config.timeout = tern::env::duration_ms("TERN_GATEWAY_TIMEOUT_MS", config.timeout, milliseconds(1),
                                            milliseconds(3600 * 1000));
    http.port = static_cast<int>(tern::env::integer("TERN_GATEWAY_PORT", 8080, 1, 65535));
    http.address = tern::env::string("TERN_GATEWAY_ADDRESS", "0.0.0.0");
    http.max_body_bytes =
        static_cast<size_t>(tern::env::integer("TERN_GATEWAY_MAX_BODY_KB", 1024, 1, 1024 * 1024)) * 1024;
    // A request's head and body must arrive within it; never less than the
    // deadline, which counts from the request's arrival.
    http.read_timeout = std::max(config.timeout, tern::env::duration_ms("TERN_GATEWAY_READ_TIMEOUT_MS", http.read_timeout,
                                                                        milliseconds(1), milliseconds(3600 * 1000)));
    // Open at once across its threads; one more is answered 503 and closed.
    http.max_connections = static_cast<int>(tern::env::integer("TERN_GATEWAY_MAX_CONNECTIONS", http.max_connections, 1,
                                                               1'000'000));
    config.per_address = rate_limit("ADDRESS", config.per_address);
    config.per_account = rate_limit("ACCOUNT", config.per_account);
    // HTTPS when both are set: PEM files of the certificate (with its chain)
    // and its key. A file that cannot be loaded stops start-up (exit 2).
    http.tls_cert_file = tern::env::string("TERN_GATEWAY_TLS_CERT", "");
    http.tls_key_file = tern::env::string("TERN_GATEWAY_TLS_KEY", "");
    if (http.tls_cert_file.empty() != http.tls_key_file.empty())
      throw tern::ConfigError("TERN_GATEWAY_TLS_CERT and TERN_GATEWAY_TLS_KEY go together: both (HTTPS) or neither");
    const std::string routes = tern::env::string("TERN_GATEWAY_ROUTES", TERN_GATEWAY_DEFAULT_ROUTES);
    gw = std::make_unique<gateway::Gateway>(gateway::RouteTable::load(routes), config);
  } catch (const std::exception& e) {
    tern::log::error("cannot start: {}", e.what());
    return 2;
  }
  tern::Service svc{"service.gateway"};
  svc.serve_http(http, [&gw](tern::Context& ctx, tern::http::Request& req) { return gw->handle(ctx, req); });
  return svc.run(argc, argv);
}
