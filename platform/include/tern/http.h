// HTTP/1.1 for tern fibers: a server (Service::serve_http) and a client
// (http::fetch). Sockets are non-blocking and wait in the loop's poll(), so
// a slow peer parks one fiber, never an OS thread. Plain http:// only.
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
  bool trace = true;                // record a span per request (when tracing is on)
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
  std::chrono::milliseconds connect_timeout{10000};  // resolving and connecting, within `timeout`
  size_t max_response_bytes = 64 * 1024 * 1024;      // the body; larger: RESOURCE_EXHAUSTED
  // Not owned; must outlive the call. With one, fetch checks every address
  // the host resolved to and refuses the URL (PERMISSION_DENIED, nothing
  // sent) if any is denied; it connects only to the addresses it checked.
  // Null: any address.
  const EgressPolicy* egress = nullptr;
};

// Client: from a tern fiber (a handler, Client::run). Sends `req` to `url`
// ("http://host:port/path?query"; req.path and req.query are taken from the
// url) and returns the response, or an error:
//   INVALID_ARGUMENT   a bad url
//   PERMISSION_DENIED  options.egress denies an address the host resolved to
//   UNAVAILABLE        cannot resolve or connect (param "stage": "connect"),
//                      or the connection was lost or the answer is not HTTP
//                      (param "stage": "response")
//   DEADLINE_EXCEEDED  past the context's deadline, timeout or connect_timeout
//   RESOURCE_EXHAUSTED the response is larger than max_response_bytes
// Any status is a response, not an error: redirects are never followed.
// One connection per call; Content-Length and chunked bodies are both read.
// Messages name the host and the system's reason (errno text): for the
// caller's logs, not for whoever chose the URL.
Result<Response> fetch(const Context& ctx, std::string_view url, Request req, const FetchOptions& options);
inline Result<Response> fetch(const Context& ctx, std::string_view url, Request req,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  return fetch(ctx, url, std::move(req), FetchOptions{.timeout = timeout, .connect_timeout = timeout});
}

}  // namespace tern::http
