// HTTP/1.1 for tern fibers: a server (Service::serve_http) and a client
// (http::fetch), each in the clear or over TLS (HTTPS). Sockets are
// non-blocking and wait in the loop's poll(), so a slow peer (or a slow
// TLS handshake) parks one fiber, never an OS thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tern/context.h"
#include "tern/egress.h"
#include "tern/error.h"

namespace tern::http {

struct Header {
  std::string name;
  std::string value;
};

// Header names compare case-insensitively.
const std::string* find_header(const std::vector<Header>& headers, std::string_view name);

struct Request {
  std::string method;               // "GET", "POST"...
  std::string path;                 // percent-decoded, without the query: "/webhooks/abc"
  std::string query;                // raw, after '?': "a=1&b=2"
  std::vector<Header> headers;
  std::string body;
  std::string peer;                 // server side: "ip:port" of the client

  const std::string* header(std::string_view name) const { return find_header(headers, name); }
};

struct Response {
  int status = 200;
  std::vector<Header> headers;
  std::string body;
  // The route template that matched ("/webhooks/{id}"), set by the handler:
  // names the request's span and labels its metrics. Empty: no route.
  std::string route;

  const std::string* header(std::string_view name) const { return find_header(headers, name); }
  // A response with Content-Type: application/json.
  static Response json(int status, std::string body);
};

// Decodes "a=1&b=x%20y" into pairs, '+' as space.
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query);

// Limits and timeouts of a server. Defaults are written here.
struct ServerOptions {
  int port = 8080;                  // 0: any free port (see Service::http_port)
  std::string address = "127.0.0.1";   // IPv4; "0.0.0.0" for every interface
  size_t max_header_bytes = 16 * 1024;     // larger: 431
  size_t max_body_bytes = 1024 * 1024;     // larger: 413
  std::chrono::milliseconds read_timeout{10000};   // a request's headers and body
  std::chrono::milliseconds idle_timeout{60000};   // a kept-alive connection with nothing to do
  // Connections open at once, across the service's threads. One more is
  // answered 503 (Retry-After: 1) and closed at once, counted in
  // tern_http_connections_refused_total; open ones in tern_http_connections.
  int max_connections = 10000;
  bool trace = true;                // a span per request (when tracing is on), and tern_http_* metrics
  // HTTPS: PEM files of the server's certificate (then any intermediates)
  // and its key, both or neither; Service::start throws ConfigError naming
  // the file if one cannot be loaded or they do not match. With them every
  // connection starts with a TLS handshake (TLS 1.2 or later) that must
  // end within read_timeout; one that fails (a plain HTTP request
  // included) is closed unserved, logged at debug level and counted in
  // tern_http_tls_handshake_failures_total. Empty: plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Runs once per request in the connection's own fiber on one of the
// service's loop threads, so it may call tern::call and friends; it must
// not block the thread. `ctx` is a fresh root context (a new trace, whose
// root span is this request's) whose deadline is read_timeout past the
// request's arrival. A throw answers 500.
using Handler = std::function<Response(Context& ctx, Request& req)>;

// How one fetch may go. Defaults are written here.
struct FetchOptions {
  std::chrono::milliseconds timeout{10000};          // the whole exchange; never past the context's deadline
  std::chrono::milliseconds connect_timeout{10000};  // resolving, connecting and any TLS handshake, within `timeout`
  size_t max_response_bytes = 64 * 1024 * 1024;      // the body; larger: RESOURCE_EXHAUSTED
  // Not owned; must outlive the call. With one, fetch checks every address
  // the host resolved to and refuses the URL (PERMISSION_DENIED, nothing
  // sent) if any is denied; it connects only to the addresses it checked.
  // Null: any address.
  const EgressPolicy* egress = nullptr;
  // https:// only: a PEM file of the CAs trusted to sign the server's
  // certificate. Empty: the system's store (Debian's ca-certificates).
  std::string ca_file{};
};

// The failures of a TLS handshake in fetch, as its error's param "tls".
inline constexpr std::string_view kTlsUntrusted = "untrusted_certificate";
inline constexpr std::string_view kTlsNameMismatch = "name_mismatch";
inline constexpr std::string_view kTlsHandshake = "handshake";

// Client: from a tern fiber (a handler, Client::run). Sends `req` to `url`
// ("http://host:port/path?query", or https:// for TLS; req.path and
// req.query are taken from the url) and returns the response, or an error:
//   INVALID_ARGUMENT   a bad url
//   PERMISSION_DENIED  options.egress denies an address the host resolved to
//   UNAVAILABLE        cannot resolve or connect (param "stage": "connect"),
//                      the TLS handshake failed (param "stage": "tls", and
//                      param "tls": kTlsUntrusted, no CA of options.ca_file
//                      or the store vouches for the certificate (or it
//                      expired); kTlsNameMismatch, it does not name the
//                      url's host; kTlsHandshake, anything else, such as no
//                      TLS at all there), or the connection was lost or the
//                      answer is not HTTP (param "stage": "response").
//                      A refused certificate is not retryable.
//   DEADLINE_EXCEEDED  past the context's deadline, timeout or connect_timeout
//   RESOURCE_EXHAUSTED the response is larger than max_response_bytes
//   FAILED_PRECONDITION options.ca_file cannot be loaded
// https:// checks the server's certificate: it must chain to a
// trusted CA and name the host (its DNS name, or its IP address when the
// url's host is one, in subjectAltName); SNI carries a host name. TLS 1.2
// or later. The egress policy is checked on the resolved addresses before
// any connection, as for http://. The handshake counts against
// connect_timeout. A close-delimited body must end with TLS's close_notify.
// Any status is a response, not an error: redirects are never followed.
// One connection per call; Content-Length and chunked bodies are both read.
// Messages name the host and the system's reason (errno text): for the
// caller's logs, not for whoever chose the URL.
Result<Response> fetch(const Context& ctx, std::string_view url, Request req, const FetchOptions& options);
inline Result<Response> fetch(const Context& ctx, std::string_view url, Request req,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  return fetch(ctx, url, std::move(req), FetchOptions{.timeout = timeout, .connect_timeout = timeout});
}

// Throws tern::ConfigError naming `source` (the variable it came from)
// unless `path` is a PEM file of CA certificates fetch can use as
// FetchOptions::ca_file: for a main() checking its settings at start-up.
void check_ca_file(std::string_view source, const std::string& path);

}  // namespace tern::http
