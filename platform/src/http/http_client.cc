// tern::http::fetch: the HTTP client, on the calling fiber's reactor.
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

#include "core/trace_context.h"
#include "http/client_tls.h"
#include "http/http_io.h"
#include "tern/egress.h"

namespace tern {
namespace detail {
namespace {

struct Url {
  bool tls = false;            // https://
  std::string host;            // without brackets: "::1"
  std::string port;            // 80 or 443 unless the url says
  std::string path = "/";
  std::string query;
};

bool parse_url(std::string_view url, Url* out) {
  if (url.starts_with("http://")) {
    url.remove_prefix(7);
  } else if (url.starts_with("https://")) {
    url.remove_prefix(8);
    out->tls = true;
  } else {
    return false;
  }
  out->port = out->tls ? "443" : "80";
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

// Every address of a lookup, in its order.
std::vector<http::IpAddress> addresses(const addrinfo* ai) {
  std::vector<http::IpAddress> out;
  for (; ai != nullptr; ai = ai->ai_next) {
    http::IpAddress a;
    if (ai->ai_family == AF_INET) {
      std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr, 4);
    } else if (ai->ai_family == AF_INET6) {
      a.v6 = true;
      std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr, 16);
    } else {
      continue;   // connect_to skips it too
    }
    out.push_back(a);
  }
  return out;
}

Result<int> connect_to(Reactor& loop, const addrinfo* ai, const Url& url, Clock::time_point deadline) {
  std::string last = "no address";
  for (; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;   // only what addresses() checks
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

// The typed error of a failed handshake (see fetch in tern/http.h).
Error tls_failure(const Socket& s, const std::string& host) {
  std::string_view kind = http::kTlsHandshake;
  switch (s.certificate_refused()) {
    case tls::Session::Refusal::kUntrusted: kind = http::kTlsUntrusted; break;
    case tls::Session::Refusal::kNameMismatch: kind = http::kTlsNameMismatch; break;
    case tls::Session::Refusal::kNone: break;
  }
  Error e = Error{Code::kUnavailable, fmt::format("{} with {}", s.tls_error(), host)}
                .with_param("stage", "tls")
                .with_param("tls", std::string(kind));
  e.retryable = kind == http::kTlsHandshake;
  return e;
}

}  // namespace
}  // namespace detail

namespace http {

Result<Response> fetch(const Context& ctx, std::string_view url, Request req, const FetchOptions& options) {
  detail::Reactor* loop = detail::Reactor::current();
  if (loop == nullptr)
    return Error{Code::kFailedPrecondition,
                 "http::fetch outside a tern runtime: call it from a handler or inside Client::run"};
  detail::Url u;
  if (!detail::parse_url(url, &u))
    return Error{Code::kInvalidArgument, fmt::format("not an http:// or https:// URL: '{}'", url)};
  std::shared_ptr<detail::tls::Context> tls;
  if (u.tls) {
    auto made = detail::client_tls_context(options.ca_file);
    if (!made.ok()) return std::move(made.error());
    tls = std::move(*made);
  }
  if (ctx.cancelled()) return Error{Code::kCancelled, "the context was cancelled"};
  const auto deadline = std::min(ctx.deadline(), detail::Clock::now() + options.timeout);
  const auto connected_by = std::min(deadline, detail::Clock::now() + options.connect_timeout);
  auto stage = [](Error e, const char* name) { return std::move(e).with_param("stage", name); };
  auto lookup = detail::resolve(*loop, u, connected_by);
  if (!lookup.ok()) return stage(std::move(lookup.error()), "connect");
  if (options.egress != nullptr) {
    // Checked here, on the very list connect_to walks: no second lookup.
    if (auto refused = options.egress->check(detail::addresses((*lookup)->result)))
      return Error{Code::kPermissionDenied,
                   fmt::format("refused by the egress policy: {} resolved to {} ({})", u.host,
                               refused->address.to_string(), refused->what)};
  }
  auto fd = detail::connect_to(*loop, (*lookup)->result, u, connected_by);
  if (!fd.ok()) return stage(std::move(fd.error()), "connect");
  detail::Socket s(*loop, *fd);
  // The Host header: [::1] in brackets, no port when it is the scheme's.
  std::string host = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  if (u.port != (u.tls ? "443" : "80")) host += ":" + u.port;
  if (tls != nullptr && !s.start_tls(std::move(tls), u.host, connected_by)) {
    if (s.timed_out())
      return Error{Code::kDeadlineExceeded, fmt::format("the TLS handshake with {} took too long", host)};
    return detail::tls_failure(s, host);
  }
  req.path = u.path;
  req.query = u.query;
  if (req.method.empty()) req.method = req.body.empty() ? "GET" : "POST";
  // The receiver can continue this trace (W3C Trace Context): its parent is
  // the span of the handler that fetches.
  if (req.header("traceparent") == nullptr) {
    if (std::string tp = detail::format_traceparent(ctx.trace_id(), ctx.span_id()); !tp.empty()) {
      req.headers.push_back({"traceparent", std::move(tp)});
      if (auto state = ctx.metadata().find("tracestate"); state != ctx.metadata().end())
        req.headers.push_back({"tracestate", state->second});
    }
  }
  if (!s.write_all(detail::serialize(req, host), deadline)) {
    if (s.timed_out()) return Error{Code::kDeadlineExceeded, fmt::format("sending to {} took too long", url)};
    return stage(Error{Code::kUnavailable, fmt::format("connection to {} lost while sending", host)}, "response");
  }
  Response resp;
  const detail::Limits limits{64 * 1024, options.max_response_bytes};
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
      return stage(Error{Code::kUnavailable, fmt::format("bad or no HTTP response from {}", host)}, "response");
  }
}

}  // namespace http
}  // namespace tern
