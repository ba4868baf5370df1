// tern::http: the client (fetch) and the server loop of Service::serve_http.
#include "http/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "observability/telemetry.h"
#include "tern/json.h"
#include "tern/log.h"

namespace tern {
namespace detail {
namespace {

struct Url {
  std::string host;
  std::string port = "80";
  std::string path = "/";
  std::string query;
};

bool parse_url(std::string_view url, Url* out) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) return false;
  url.remove_prefix(kScheme.size());
  size_t slash = url.find_first_of("/?");
  std::string_view authority = url.substr(0, slash);
  std::string_view rest = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  size_t colon = authority.rfind(':');
  if (authority.front() == '[') {  // [::1]:8080
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    out->host.assign(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return false;
      out->port.assign(authority.substr(close + 2));
    }
  } else if (colon != std::string_view::npos) {
    out->host.assign(authority.substr(0, colon));
    out->port.assign(authority.substr(colon + 1));
  } else {
    out->host.assign(authority);
  }
  int port = 0;
  auto [p, ec] = std::from_chars(out->port.data(), out->port.data() + out->port.size(), port);
  if (ec != std::errc{} || p != out->port.data() + out->port.size() || port <= 0 || port > 65535)
    return false;
  size_t q = rest.find('?');
  if (!rest.empty() && rest.front() == '/') out->path.assign(rest.substr(0, q));
  if (q != std::string_view::npos) out->query.assign(rest.substr(q + 1));
  return !out->host.empty();
}

// getaddrinfo blocks, so it runs on a short-lived thread of its own while
// the fiber waits on a pipe; an abandoned lookup cleans up after itself.
struct Lookup {
  int rc = EAI_AGAIN;
  addrinfo* result = nullptr;
  ~Lookup() {
    if (result != nullptr) freeaddrinfo(result);
  }
};

Result<std::shared_ptr<Lookup>> resolve(Reactor& loop, const Url& url, Clock::time_point deadline) {
  auto lookup = std::make_shared<Lookup>();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  lookup->rc = getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &lookup->result);
  if (lookup->rc == 0) return lookup;

  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    return Error{Code::kUnavailable, fmt::format("pipe: {}", std::strerror(errno))};
  try {
    std::thread([lookup, host = url.host, port = url.port, w = fds[1]] {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_family = AF_UNSPEC;
      hints.ai_flags = AI_NUMERICSERV;
      lookup->rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &lookup->result);
      char one = 1;
      [[maybe_unused]] ssize_t n = write(w, &one, 1);
      close(w);
    }).detach();
  } catch (const std::system_error& e) {
    close(fds[0]);
    close(fds[1]);
    return Error{Code::kUnavailable, fmt::format("cannot start a DNS lookup: {}", e.what())};
  }
  short ready = loop.wait_fd(fds[0], POLLIN, deadline);
  close(fds[0]);
  if (ready == 0)
    return Error{Code::kDeadlineExceeded, fmt::format("looking up {} took too long", url.host)};
  // The pipe's write happens after the lookup's result is stored.
  if (lookup->rc != 0)
    return Error{Code::kUnavailable, fmt::format("cannot resolve {}: {}", url.host, gai_strerror(lookup->rc))};
  return lookup;
}

Result<int> connect_to(Reactor& loop, const addrinfo* ai, const Url& url, Clock::time_point deadline) {
  std::string last = "no address";
  for (; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno == EINPROGRESS) {
      if (loop.wait_fd(fd, POLLOUT, deadline) == 0) {
        loop.cancel_waits(fd);
        close(fd);
        return Error{Code::kDeadlineExceeded, fmt::format("connecting to {}:{} took too long", url.host, url.port)};
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) return fd;
      last = std::strerror(err);
    } else {
      last = std::strerror(errno);
    }
    close(fd);
  }
  return Error{Code::kUnavailable, fmt::format("cannot connect to {}:{}: {}", url.host, url.port, last)};
}

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
                          status == 408 ? "DEADLINE_EXCEEDED" : "INVALID_ARGUMENT", json::quote(message)));
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

HttpServer::HttpServer(Reactor& loop, Transport& transport, SpanBuffer& spans, int listen_fd,
                       const http::ServerOptions& options,
                       const http::Handler& handler, std::atomic<int>* active)
    : loop_(loop), transport_(transport), spans_(spans), listen_fd_(listen_fd), options_(options), handler_(handler), active_(active) {}

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

void HttpServer::serve(int fd, std::string peer) {
  Socket s(loop_, fd);
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
                                                           : 0;
      if (status != 0) {
        std::string_view why = status == 408   ? "the request did not arrive in time"
                               : status == 431 ? "request headers too large"
                               : status == 413 ? "request body too large"
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
    Context ctx = Context::with_timeout(options_.read_timeout);
    ctx.set_transport(&transport_);
    {
      ScopedCurrent current(&ctx);
      try {
        resp = handler_(ctx, req);
      } catch (const std::exception& e) {
        log::error("HTTP {} {}: the handler threw: {}", req.method, req.path, e.what());
        resp = http::Response::json(500, R"({"error":{"code":"INTERNAL","message":"internal error"}})");
      }
    }
    if (spans_.tracing() && options_.trace) {
      v1::Span span = make_span(v1::Span::HTTP, ctx.trace_id(), ctx.span_id(), "",
                                fmt::format("{} {}", req.method, req.path), clock, code_of_status(resp.status));
      span.set_peer(peer);
      (*span.mutable_tags())["http.status"] = std::to_string(resp.status);
      spans_.record(std::move(span));
    }
    keep_alive = keep_alive && !stopped_;
    bool sent = s.write_all(serialize(resp, keep_alive), Clock::now() + options_.read_timeout);
    active_->fetch_sub(1, std::memory_order_acq_rel);
    if (!sent) return;
  }
}

}  // namespace detail

namespace http {

Result<Response> fetch(const Context& ctx, std::string_view url, Request req,
                       std::chrono::milliseconds timeout) {
  detail::Reactor* loop = detail::Reactor::current();
  if (loop == nullptr)
    return Error{Code::kFailedPrecondition,
                 "http::fetch outside a tern runtime: call it from a handler or inside Client::run"};
  detail::Url u;
  if (!detail::parse_url(url, &u))
    return Error{Code::kInvalidArgument, fmt::format("not an http:// URL: '{}'", url)};
  if (ctx.cancelled()) return Error{Code::kCancelled, "the context was cancelled"};
  const auto deadline = std::min(ctx.deadline(), detail::Clock::now() + timeout);
  auto lookup = detail::resolve(*loop, u, deadline);
  if (!lookup.ok()) return std::move(lookup.error());
  auto fd = detail::connect_to(*loop, (*lookup)->result, u, deadline);
  if (!fd.ok()) return std::move(fd.error());
  detail::Socket s(*loop, *fd);
  req.path = u.path;
  req.query = u.query;
  if (req.method.empty()) req.method = req.body.empty() ? "GET" : "POST";
  const std::string host = u.port == "80" ? u.host : fmt::format("{}:{}", u.host, u.port);
  if (!s.write_all(detail::serialize(req, host), deadline)) {
    if (s.timed_out()) return Error{Code::kDeadlineExceeded, fmt::format("sending to {} took too long", url)};
    return Error{Code::kUnavailable, fmt::format("connection to {} lost while sending", host)};
  }
  Response resp;
  const detail::Limits limits{64 * 1024, 64 * 1024 * 1024};
  switch (detail::read_response(s, limits, deadline, &resp)) {
    case detail::ReadFailure::kNone:
      return resp;
    case detail::ReadFailure::kTimeout:
      return Error{Code::kDeadlineExceeded, fmt::format("no response from {} in time", url)};
    case detail::ReadFailure::kBodyTooLarge:
    case detail::ReadFailure::kHeadTooLarge:
      return Error{Code::kResourceExhausted, fmt::format("the response from {} is too large", url)};
    default:
      if (s.timed_out()) return Error{Code::kDeadlineExceeded, fmt::format("no response from {} in time", url)};
      return Error{Code::kUnavailable, fmt::format("bad or no HTTP response from {}", host)};
  }
}

}  // namespace http
}  // namespace tern
