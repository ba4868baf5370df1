// tern::http: the server loop of Service::serve_http (the client is http_client.cc).
#include "http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include <boost/fiber/operations.hpp>
#include <fmt/format.h>

#include "core/trace_context.h"
#include "observability/telemetry.h"
#include "tern/env.h"
#include "tern/json.h"
#include "tern/log.h"

namespace tern {
namespace detail {
namespace {

// How an HTTP exchange ended, for its span: the inverse of http_status().
Code code_of_status(int status) {
  if (status < 400) return Code::kOk;
  for (int c = 1; c <= 16; ++c)
    if (http_status(static_cast<Code>(c)) == status) return static_cast<Code>(c);
  return status < 500 ? Code::kInvalidArgument : Code::kInternal;
}

http::Response error_response(int status, std::string_view message) {
  return http::Response::json(
      status, fmt::format(R"({{"error":{{"code":"{}","message":{}}}}})",
                          status == 408   ? "DEADLINE_EXCEEDED"
                          : status == 505 ? "UNIMPLEMENTED"
                                          : "INVALID_ARGUMENT", json::quote(message)));
}

}  // namespace

// --- server ---

int http_listen(const std::string& address, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error(fmt::format("HTTP: '{}' is not an IPv4 address", address));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("HTTP: socket: {}", std::strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 1024) != 0) {
    int err = errno;
    close(fd);
    throw std::runtime_error(fmt::format("HTTP: cannot listen on {}:{}: {}", address, port, std::strerror(err)));
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

std::shared_ptr<tls::Context> HttpServer::tls_context(const http::ServerOptions& options) {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) return nullptr;
  if (options.tls_cert_file.empty() || options.tls_key_file.empty())
    throw ConfigError("HTTPS needs both a certificate and its key (tls_cert_file, tls_key_file)");
  try {
    tls::ServerConfig config;
    config.cert_file = options.tls_cert_file;
    config.key_file = options.tls_key_file;
    return tls::Context::server(config);
  } catch (const tls::TlsError& e) {
    throw ConfigError(fmt::format("HTTPS: {}", e.what()));
  }
}

namespace {
// The request's context: it continues the trace a W3C traceparent header
// names (the caller's span as this one's parent, tracestate passed on in the
// metadata), or starts one.
Context context_for(const http::Request& req, std::chrono::milliseconds timeout) {
  const std::string* header = req.header("traceparent");
  std::optional<TraceParent> parent = header != nullptr ? parse_traceparent(*header) : std::nullopt;
  if (!parent) return Context::with_timeout(timeout);
  Context::Metadata metadata;
  if (const std::string* state = req.header("tracestate"))
    if (std::string_view valid = valid_tracestate(*state); !valid.empty()) metadata.emplace("tracestate", valid);
  return Context::from_wire(to_unix_ms(Clock::now() + timeout), std::move(parent->trace_id), "",
                            std::move(parent->parent_id), "", "", std::move(metadata));
}
}  // namespace

HttpServer::HttpServer(Reactor& loop, Transport& transport, SpanBuffer& spans, int listen_fd,
                       const http::ServerOptions& options, const http::Handler& handler,
                       std::atomic<int>* active, HttpConnections* connections, Tls tls)
    : loop_(loop), transport_(transport), spans_(spans), listen_fd_(listen_fd), options_(options),
      handler_(handler), active_(active), connections_(connections), tls_(std::move(tls)) {}

HttpServer::~HttpServer() {
  if (listen_fd_ >= 0) close(listen_fd_);
}

void HttpServer::start() {
  loop_.post([this] { accept_loop(); });
}

void HttpServer::stop() {
  loop_.post([this] {
    stopped_ = true;
    loop_.cancel_waits(listen_fd_);
    for (int fd : idle_) loop_.cancel_waits(fd);
  });
}

void HttpServer::accept_loop() {
  while (!stopped_ && !loop_.stopping()) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && !take_place()) {
      refuse(fd);
      continue;
    }
    if (fd >= 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      char host[INET6_ADDRSTRLEN] = "?";
      int port = 0;
      if (peer.ss_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&peer);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
      }
      loop_.spawn([this, fd, name = fmt::format("{}:{}", host, port)]() mutable {
        serve(fd, std::move(name));
      });
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      loop_.wait_fd(listen_fd_, POLLIN, Clock::now() + std::chrono::hours(1));
      continue;
    }
    // Out of file descriptors and the like: back off rather than spin.
    log::warn("HTTP accept: {}", std::strerror(errno));
    boost::this_fiber::sleep_for(std::chrono::milliseconds(100));
  }
}

// One more open connection, unless that would pass the cap: the threads'
// accept loops share the count, so it is taken in one compare-and-swap.
bool HttpServer::take_place() {
  int open = connections_->open.load(std::memory_order_acquire);
  do {
    if (open >= options_.max_connections) return false;
  } while (!connections_->open.compare_exchange_weak(open, open + 1, std::memory_order_acq_rel));
  return true;
}

// At the cap: a 503 in one non-blocking send (the socket's buffer is
// empty) and a close, nothing read, no fiber, no wait.
void HttpServer::refuse(int fd) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 70\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\n"
      R"({"error":{"code":"UNAVAILABLE","message":"too many open connections"}})";
  static_assert(kBusy.size() - kBusy.find("\r\n\r\n") - 4 == 70);
  if (connections_->refused != nullptr) connections_->refused->inc();   // before the peer can see it
  [[maybe_unused]] ssize_t n = send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  close(fd);
}

void HttpServer::serve(int fd, std::string peer) {
  struct Open {
    std::atomic<int>& n;
    ~Open() { n.fetch_sub(1, std::memory_order_acq_rel); }
  } open{connections_->open};
  Socket s(loop_, fd);
  if (tls_.context != nullptr) {
    // Idle until the handshake is done: stop() closes it too.
    idle_.insert(fd);
    const bool ok = s.start_tls(tls_.context, {}, Clock::now() + options_.read_timeout);
    idle_.erase(fd);
    if (!ok) {
      if (stopped_ || loop_.stopping()) return;
      // Costs this connection only. A scanner or a plain-HTTP client is
      // not worth more than debug; the counter shows a trend.
      if (tls_.handshake_failures != nullptr) tls_.handshake_failures->inc();
      log::debug("HTTPS {}: {}", peer,
                 s.timed_out() ? std::string("the TLS handshake did not end in time") : s.tls_error());
      return;
    }
  }
  const Limits limits{options_.max_header_bytes, options_.max_body_bytes};
  bool keep_alive = true;
  while (keep_alive && !stopped_ && !loop_.stopping()) {
    http::Request req;
    idle_.insert(fd);
    ReadFailure failure = read_request(s, limits, Clock::now() + options_.idle_timeout,
                                       options_.read_timeout, &req);
    idle_.erase(fd);
    if (failure != ReadFailure::kNone) {
      int status = failure == ReadFailure::kTimeout        ? 408
                   : failure == ReadFailure::kHeadTooLarge ? 431
                   : failure == ReadFailure::kBodyTooLarge ? 413
                   : failure == ReadFailure::kMalformed    ? 400
                   : failure == ReadFailure::kVersionNotSupported ? 505
                                                           : 0;
      if (status != 0) {
        std::string_view why = status == 408   ? "the request did not arrive in time"
                               : status == 431 ? "request headers too large"
                               : status == 413 ? "request body too large"
                               : status == 505 ? "HTTP version not supported (HTTP/1.1 or HTTP/1.0)"
                                               : "malformed HTTP request";
        s.write_all(serialize(error_response(status, why), false),
                    Clock::now() + std::chrono::seconds(1));
      }
      return;
    }
    req.peer = peer;
    const std::string* connection = req.header("Connection");
    const bool http10 = req.header(":version") != nullptr;
    keep_alive = connection == nullptr ? !http10
                                       : (connection->find("close") == std::string::npos &&
                                          (!http10 || connection->find("eep-alive") != std::string::npos));
    active_->fetch_add(1, std::memory_order_acq_rel);
    http::Response resp;
    const SpanClock clock;
    Context ctx = context_for(req, options_.read_timeout);
    ctx.set_transport(&transport_);
    {
      ScopedCurrent current(&ctx);
      const Reactor::Holding holding(req.method, req.path, ctx.trace_id());
      try {
        resp = handler_(ctx, req);
      } catch (const std::exception& e) {
        log::error("HTTP {} {}: the handler threw: {}", req.method, req.path, e.what());
        resp = http::Response::json(500, R"({"error":{"code":"INTERNAL","message":"internal error"}})");
      }
    }
    if (options_.trace) {
      metric::http_requests(spans_.service(), resp.route, req.method, resp.status).inc();
      metric::http_latency(spans_.service(), resp.route).observe_us(static_cast<uint64_t>(clock.elapsed_us()));
    }
    if (SpanRecord* span = options_.trace ? spans_.open(v1::Span::HTTP, clock.start) : nullptr) {
      span->trace_id = ctx.trace_id();
      span->span_id = ctx.span_id();
      span->parent_span_id = ctx.parent_span_id();
      // Named by the route template that matched, never the raw path (one
      // name per route, not one per id).
      span->name.assign(req.method, 0, 64);
      if (!resp.route.empty()) span->name.append(1, ' ').append(resp.route);
      span->code = code_of_status(resp.status);
      span->peer = peer;
      span->http_status = resp.status;
      span->http_method = req.method;
      // At most 1 KiB of the path: a span says which request, not all of it.
      span->http_path.assign(req.path, 0, 1024);
      span->http_route = resp.route;
      spans_.commit(span);
    }
    // The response says which span answered it, so a caller can find it.
    if (resp.header("traceparent") == nullptr)
      if (std::string tp = format_traceparent(ctx.trace_id(), ctx.span_id()); !tp.empty())
        resp.headers.push_back({"traceparent", std::move(tp)});
    keep_alive = keep_alive && !stopped_;
    bool sent = s.write_all(serialize(resp, keep_alive), Clock::now() + options_.read_timeout);
    active_->fetch_sub(1, std::memory_order_acq_rel);
    if (!sent) return;
    // A pipelining client's next request may already be buffered, and
    // answering it need not suspend: let the thread's other fibers (and
    // the broker link, and span batches) run between requests.
    boost::this_fiber::yield();
  }
}

}  // namespace detail

}  // namespace tern
