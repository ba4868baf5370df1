// The HTTP gateway: HTTP/1.1 in front of the services. See README.md.
#include <algorithm>
#include <cstdlib>

#include "gateway.h"
#include "tern/log.h"
#include "tern/service.h"

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

std::string env_str(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  gateway::Config config;
  config.timeout = std::chrono::milliseconds(env_int("TERN_GATEWAY_TIMEOUT_MS", 10000));
  tern::http::ServerOptions http;
  http.port = env_int("TERN_GATEWAY_PORT", 8080);
  http.address = env_str("TERN_GATEWAY_ADDRESS", "0.0.0.0");
  http.max_body_bytes = static_cast<size_t>(env_int("TERN_GATEWAY_MAX_BODY_KB", 1024)) * 1024;
  http.read_timeout = std::max(http.read_timeout, config.timeout);
  const std::string routes = env_str("TERN_GATEWAY_ROUTES", TERN_GATEWAY_DEFAULT_ROUTES);
  std::unique_ptr<gateway::Gateway> gw;
  try {
    gw = std::make_unique<gateway::Gateway>(gateway::RouteTable::load(routes), config);
  } catch (const std::exception& e) {
    tern::log::error("{}", e.what());
    return 2;
  }
  tern::Service svc{"service.gateway"};
  svc.serve_http(http, [&gw](tern::Context& ctx, tern::http::Request& req) { return gw->handle(ctx, req); });
  return svc.run(argc, argv);
}
