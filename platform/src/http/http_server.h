// The HTTP server of Service::serve_http: one HttpServer per reactor thread,
// each accepting on its own SO_REUSEPORT socket, one fiber per connection.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>

#include "core/tls.h"
#include "http/http_io.h"
#include "observability/span_buffer.h"
#include "tern/call.h"
#include "tern/metrics.h"

namespace tern::detail {

// A listening IPv4 socket (non-blocking, SO_REUSEPORT). Throws on failure.
int http_listen(const std::string& address, int port);
int bound_port(int fd);

// HTTPS: the server context every connection's handshake uses, and where
// failed handshakes are counted. No context: plain HTTP.
struct HttpTls {
  std::shared_ptr<tls::Context> context;
  metrics::Counter* handshake_failures = nullptr;
};

// The connections open on one port, shared by its threads' servers.
struct HttpConnections {
  std::atomic<int> open{0};
  metrics::Counter* refused = nullptr;   // answered 503 at the cap
};

class HttpServer {
 public:
  using Tls = HttpTls;
  // The context of options.tls_cert_file and tls_key_file, or null without
  // them. Throws ConfigError naming the file.
  static std::shared_ptr<tls::Context> tls_context(const http::ServerOptions& options);

  // Takes the listening socket. `active` counts requests being handled;
  // `connections`, the port's open connections (options.max_connections).
  // Handlers' calls go through `transport`; their spans to `spans`.
  HttpServer(Reactor& reactor, Transport& transport, SpanBuffer& spans, int listen_fd,
             const http::ServerOptions& options, const http::Handler& handler, std::atomic<int>* active,
             HttpConnections* connections, Tls tls = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Thread-safe. start: begin accepting. stop: stop accepting and close idle
  // connections; requests being handled still get their responses (with
  // Connection: close). Destroy only once the loop has stopped.
  void start();
  void stop();

 private:
  void accept_loop();
  void serve(int fd, std::string peer);
  bool take_place();
  void refuse(int fd);

  Reactor& loop_;
  Transport& transport_;
  SpanBuffer& spans_;
  const int listen_fd_;
  const http::ServerOptions options_;
  const http::Handler& handler_;
  std::atomic<int>* active_;
  HttpConnections* connections_;
  const Tls tls_;
  bool stopped_ = false;     // loop thread only
  std::set<int> idle_;       // connections waiting for their next request
};

}  // namespace tern::detail
