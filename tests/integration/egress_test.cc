// http::fetch under FetchOptions: the egress policy checked on the resolved
// addresses before any connection, no redirects, the response cap, the
// connect timeout; and where a service's observability port listens.
// Loopback only: every denied address here is refused, never dialled.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "broker.h"
#include "tern/tern.h"
#include "tern/egress.h"
#include "tern/http.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A listening socket on 127.0.0.1 that never accepts: whether anything
// connected to it is read from the kernel's accept queue.
struct Listener {
  explicit Listener(int backlog = 8) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd, backlog) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { close(fd); }
  // Whether a connection is waiting to be accepted (then accepted and closed).
  bool connected() {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) return false;
    close(c);
    return true;
  }
  int fd;
  int port;
};

// A serve_http service whose handler the test writes; counts requests.
struct Server {
  explicit Server(tern::http::Handler h) : svc(unique_service("egress")) {
    tern::http::ServerOptions http;
    http.port = 0;
    svc.serve_http(http, [this, h](tern::Context& ctx, tern::http::Request& req) {
      ++requests;
      return h(ctx, req);
    });
    tern::Options o = broker_options();
    o.threads = 1;
    svc.start(o);
    url = "http://127.0.0.1:" + std::to_string(svc.http_port());
  }
  ~Server() { svc.stop(); }
  tern::Service svc;
  std::atomic<int> requests{0};
  std::string url;
};

tern::Result<tern::http::Response> fetch(tern::Client& client, const std::string& url,
                                         const tern::http::FetchOptions& options) {
  return client.run([&] { return tern::http::fetch(tern::Context::with_timeout(5s), url, {}, options); });
}

// The local address of the socket listening on `port`, from /proc/net/tcp
// ("0100007F" is 127.0.0.1), or "" if none listens.
std::string listening_address(int port) {
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);   // header
  char want[8];
  std::snprintf(want, sizeof want, "%04X", port);
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (state == "0A" && local.substr(local.find(':') + 1) == want) return local.substr(0, local.find(':'));
  }
  return "";
}

int free_port() {
  Listener probe;
  return probe.port;
}

}  // namespace

TEST_CASE("fetch with the default egress policy refuses loopback by any spelling, over http and https, and connects to nothing") {
  tern::Client client(broker_options());
  Listener target;
  const tern::http::EgressPolicy policy;
  const tern::http::FetchOptions options{.egress = &policy};
  const std::string port = std::to_string(target.port);
  for (std::string url : {"http://127.0.0.1:" + port + "/", "http://localhost:" + port + "/",
                          "http://127.1:" + port + "/", "http://2130706433:" + port + "/",
                          "http://[::ffff:127.0.0.1]:" + port + "/", "http://[::1]:" + port + "/",
                          "https://127.0.0.1:" + port + "/", "https://localhost:" + port + "/"}) {
    INFO(url);
    auto r = fetch(client, url, options);
    CHECK(r.code() == tern::Code::kPermissionDenied);
    if (!r.ok()) CHECK_THAT(r.error().message, Catch::StartsWith("refused by the egress policy"));
    CHECK_FALSE(target.connected());
  }
  // Without a policy the same socket is reached: the check above can see a connection.
  auto r = fetch(client, "http://127.0.0.1:" + port + "/", {.timeout = 300ms});
  CHECK(r.code() == tern::Code::kDeadlineExceeded);   // it never answers
  CHECK(target.connected());
}

TEST_CASE("fetch reaches an allow-listed loopback address, by literal and by name") {
  tern::Client client(broker_options());
  Server server([](tern::Context&, tern::http::Request&) { return tern::http::Response{.body = "hi"}; });
  const auto policy = tern::http::EgressPolicy::from_list("test", "127.0.0.1/32,::1/128");
  const tern::http::FetchOptions options{.egress = &policy};
  auto r = fetch(client, server.url + "/", options);
  REQUIRE(r.ok());
  CHECK(r->body == "hi");
  auto by_name = fetch(client, "http://localhost:" + std::to_string(server.svc.http_port()) + "/", options);
  REQUIRE(by_name.ok());
  CHECK(server.requests == 2);
  // Only what the list names: 127.0.0.2 is loopback too, and still refused.
  auto other = fetch(client, "http://127.0.0.2:" + std::to_string(server.svc.http_port()) + "/", options);
  CHECK(other.code() == tern::Code::kPermissionDenied);
  CHECK(server.requests == 2);
}

TEST_CASE("fetch follows no redirect and caps the response") {
  tern::Client client(broker_options());
  std::atomic<int> targets{0};
  Server server([&](tern::Context&, tern::http::Request& req) {
    if (req.path == "/target") ++targets;
    if (req.path == "/big") return tern::http::Response{.body = std::string(100 * 1024, 'x')};
    if (req.path == "/small") return tern::http::Response{.body = std::string(1024, 'x')};
    tern::http::Response r{.status = 302};
    r.headers.push_back({"Location", "/target"});
    return r;
  });
  auto redirected = fetch(client, server.url + "/hop", {});
  REQUIRE(redirected.ok());
  CHECK(redirected->status == 302);
  CHECK(targets == 0);

  const tern::http::FetchOptions capped{.max_response_bytes = 64 * 1024};
  CHECK(fetch(client, server.url + "/big", capped).code() == tern::Code::kResourceExhausted);
  auto small = fetch(client, server.url + "/small", capped);
  REQUIRE(small.ok());
  CHECK(small->body.size() == 1024);
}

TEST_CASE("fetch gives up connecting at connect_timeout, well before the total timeout") {
  tern::Client client(broker_options());
  // Backlog 0 and never accepting: once its queue is full, the kernel drops
  // further SYNs on the floor, so a connect hangs.
  Listener full(0);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(full.port));
    connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(c);
  }
  const auto start = Clock::now();
  auto r = fetch(client, "http://127.0.0.1:" + std::to_string(full.port) + "/",
                 {.timeout = 5s, .connect_timeout = 300ms});
  const auto took = Clock::now() - start;
  for (int c : fillers) close(c);
  CHECK(r.code() == tern::Code::kDeadlineExceeded);
  if (!r.ok()) CHECK_THAT(r.error().message, Catch::Contains("connecting"));
  CHECK(took < 300ms + 700ms);
}

TEST_CASE("a service's metrics and HTTP ports listen on 127.0.0.1 unless told otherwise") {
  const int metrics = free_port();
  tern::Service svc(unique_service("bind"));
  tern::http::ServerOptions http;   // the default address
  http.port = 0;
  svc.serve_http(http, [](tern::Context&, tern::http::Request&) { return tern::http::Response{}; });
  tern::Options o = broker_options();
  o.threads = 1;
  o.metrics_port = metrics;
  svc.start(o);
  CHECK(listening_address(svc.metrics_port()) == "0100007F");   // 127.0.0.1
  CHECK(listening_address(svc.http_port()) == "0100007F");
  svc.stop();

  // TERN_HTTP_ADDR is honoured (127.0.0.2: another address, still loopback).
  tern::Service other(unique_service("bind"));
  o.http_addr = "127.0.0.2";
  o.metrics_port = free_port();
  other.start(o);
  CHECK(listening_address(other.metrics_port()) == "0200007F");
  other.stop();
}
