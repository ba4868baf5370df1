// tern::http: Service::serve_http and http::fetch on the loop's fibers, with
// a real broker under the service (TERN_AMQP_URL).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"
#include "tern/http.h"
#include "tern/json.h"
#include "tern/metrics.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Echoes what it received as JSON-ish text; /slow sleeps 200 ms first.
tern::http::Response echo(tern::Context&, tern::http::Request& req) {
  if (req.path == "/slow") boost::this_fiber::sleep_for(200ms);
  if (req.path == "/throw") throw std::runtime_error("boom");
  const std::string* probe = req.header("x-probe");
  tern::http::Response r;
  r.status = req.path == "/missing" ? 404 : 200;
  r.headers.push_back({"X-Echo-Method", req.method});
  r.body = req.method + " " + req.path + "?" + req.query + " [" + (probe ? *probe : "") + "] " + req.body;
  return r;
}

struct HttpService {
  explicit HttpService(tern::http::ServerOptions http = {}, int threads = 1)
      : svc(unique_service("http")) {
    http.port = 0;
    http.address = "127.0.0.1";
    svc.serve_http(http, echo);
    tern::Options o = broker_options();
    o.threads = threads;
    svc.start(o);
    url = "http://127.0.0.1:" + std::to_string(svc.http_port());
  }
  ~HttpService() { svc.stop(); }
  tern::Service svc;
  std::string url;
};

// A blocking socket to 127.0.0.1:port, for what fetch will not send.
int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Reads until `responses` responses' ends (a body after "\r\n\r\n" is
// not parsed: the test bodies hold no CRLFCRLF), or until EOF after one
// saying Connection: close.
std::string read_responses(int fd, int responses = 1) {
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    int seen = 0;
    for (size_t p = got.find("HTTP/1.1 "); p != std::string::npos; p = got.find("HTTP/1.1 ", p + 1)) ++seen;
    if (seen >= responses && got.rfind("Connection: close") != std::string::npos) continue;  // until EOF
    if (seen >= responses && got.size() > 0 && got.find("\r\n\r\n", got.rfind("HTTP/1.1 ")) != std::string::npos) {
      // The last response's body: by Content-Length.
      size_t head = got.rfind("HTTP/1.1 ");
      size_t cl = got.find("Content-Length: ", head);
      size_t end = got.find("\r\n\r\n", head) + 4;
      size_t len = std::stoul(got.substr(cl + 16));
      if (got.size() >= end + len) break;
    }
  }
  return got;
}

// Sends `request` on a new connection, then reads as read_responses does.
std::string raw_exchange(int port, const std::string& request, int responses = 1) {
  int fd = raw_connect(port);
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  std::string got = read_responses(fd, responses);
  close(fd);
  return got;
}

int threads_now() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

}  // namespace

TEST_CASE("fetch sends a request to serve_http and gets the handler's response") {
  HttpService s;
  tern::Client client(broker_options());
  auto r = client.run([&] {
    tern::http::Request req;
    req.method = "POST";
    req.headers.push_back({"X-Probe", "p1"});
    req.body = "hello body";
    return tern::http::fetch(tern::Context::with_timeout(5s), s.url + "/a%20b/c?x=1&y=two", req);
  });
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(*r->header("x-echo-method") == "POST");
  CHECK(r->body == "POST /a b/c?x=1&y=two [p1] hello body");
  auto missing = client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(5s), s.url + "/missing", {});
  });
  REQUIRE(missing.ok());   // a status is a response, not an error
  CHECK(missing->status == 404);
}

TEST_CASE("a kept-alive connection serves requests one after another") {
  HttpService s;
  std::string two = "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string got = raw_exchange(s.svc.http_port(), two, 2);
  CHECK_THAT(got, Catch::Contains("GET /one?"));
  CHECK_THAT(got, Catch::Contains("GET /two?"));
  CHECK_THAT(got, Catch::EndsWith("GET /two? [] "));
}

TEST_CASE("a chunked request body is read whole") {
  HttpService s;
  std::string req = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
  CHECK_THAT(raw_exchange(s.svc.http_port(), req), Catch::Contains("POST /c? [] hello world"));
}

TEST_CASE("chunk sizes that are not all hex or overflow, and endless trailers, are refused") {
  HttpService s;
  const std::string head = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  CHECK_THAT(raw_exchange(s.svc.http_port(), head + "5zz\r\nhello\r\n0\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400"));
  // Wraps a size_t sum with what was read: must not pass the body limit.
  CHECK_THAT(raw_exchange(s.svc.http_port(), head + "1\r\nx\r\nffffffffffffffff\r\nx\r\n0\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 413"));
  CHECK_THAT(raw_exchange(s.svc.http_port(), head + "10000000000000000\r\nx\r\n0\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 400"));
  // 0, then trailer lines past the header limit (16 KiB): refused, not kept.
  std::string trailers;
  for (int i = 0; i < 2000; ++i) trailers += "X-T: " + std::string(20, 't') + "\r\n";
  CHECK_THAT(raw_exchange(s.svc.http_port(), head + "5\r\nhello\r\n0\r\n" + trailers + "\r\n"),
             Catch::StartsWith("HTTP/1.1 431"));
  // A few trailers are fine.
  CHECK_THAT(raw_exchange(s.svc.http_port(), head + "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
             Catch::Contains("POST /c? [] hello"));
}

TEST_CASE("ambiguous framing and bad header bytes are 400 and the connection closes") {
  HttpService s;
  auto status = [&](const std::string& head, const std::string& body = "") {
    const std::string got = raw_exchange(s.svc.http_port(), "POST /c HTTP/1.1\r\nHost: x\r\n" + head + "\r\n" + body);
    return got.substr(0, 12);
  };
  // Two Content-Lengths that differ (the first used to win), or even agree.
  CHECK(status("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!") == "HTTP/1.1 400");
  CHECK(status("Content-Length: 5\r\nContent-Length: 5\r\n", "hello") == "HTTP/1.1 400");
  // Transfer-Encoding and Content-Length together: request smuggling.
  CHECK(status("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n") == "HTTP/1.1 400");
  // A bare LF inside a value, a control byte in a name or value, a space in a name.
  CHECK(status("X-A: one\ntwo\r\nContent-Length: 0\r\n") == "HTTP/1.1 400");
  CHECK(status(std::string("X-\x01A: 1\r\nContent-Length: 0\r\n")) == "HTTP/1.1 400");
  CHECK(status(std::string("X-A: a\x7f\r\nContent-Length: 0\r\n")) == "HTTP/1.1 400");
  CHECK(status("X A: 1\r\nContent-Length: 0\r\n") == "HTTP/1.1 400");
  // More than 100 headers.
  std::string many;
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  CHECK(status(many + "Content-Length: 0\r\n") == "HTTP/1.1 400");
  // And a clean one still goes through, with obs-text in a value.
  CHECK(status("X-A: caf\xc3\xa9\tok\r\nContent-Length: 5\r\nConnection: close\r\n", "hello") == "HTTP/1.1 200");
}

// Sends `bad` and, right behind it, a good request; returns all that came
// back until the server closed. A refused request must end the connection:
// the good one after it is never answered.
std::string refused_exchange(int port, const std::string& bad) {
  return raw_exchange(port, bad + "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
}

TEST_CASE("a request line that is not method SP origin-form SP HTTP/1.x is 400 or 505, as is a missing, doubled or malformed Host, and the connection closes") {
  HttpService s;
  const int port = s.svc.http_port();
  auto status = [&](const std::string& bad) {
    const std::string got = refused_exchange(port, bad);
    CHECK_THAT(got, !Catch::Contains("/after"));
    return got.substr(0, 12);
  };
  // Two spaces, a tab, a space inside the target.
  CHECK(status("GET  /a HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a  HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET\t/a HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  // A method that is not a token, an empty one.
  CHECK(status("G(T /a HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status(" /a HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  // Control and non-ASCII bytes in the target; a target that is not origin-form.
  CHECK(status(std::string("GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n")) == "HTTP/1.1 400");
  CHECK(status(std::string("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n")) == "HTTP/1.1 400");
  CHECK(status("GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET * HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  // Versions: other HTTP/x.y are 505, anything else 400.
  CHECK(status("GET /a HTTP/2.0\r\nHost: x\r\n\r\n") == "HTTP/1.1 505");
  CHECK(status("GET /a HTTP/1.2\r\nHost: x\r\n\r\n") == "HTTP/1.1 505");
  CHECK(status("GET /a HTTP/1.10\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a http/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a HTTP/1.1 \r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
  // obs-fold: a header line that starts with SP or HTAB.
  CHECK(status("GET /a HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo: 2\r\n\r\n") == "HTTP/1.1 400");
  // Host (RFC 9112 section 3.2): none in HTTP/1.1, two, or one that is not host[:port].
  CHECK(status("GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a HTTP/1.1\r\nHost: x, y\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a HTTP/1.1\r\nHost: x/y\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status("GET /a HTTP/1.0\r\nHost: x\r\nHost: x\r\n\r\n") == "HTTP/1.1 400");
}

TEST_CASE("empty lines before a request line are skipped, and OPTIONS * and HTTP/1.0 are served") {
  HttpService s;
  const int port = s.svc.http_port();
  CHECK_THAT(raw_exchange(port, "\r\n\r\nGET /lead HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 200") && Catch::EndsWith("GET /lead? [] "));
  CHECK_THAT(raw_exchange(port, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 200") && Catch::EndsWith("OPTIONS *? [] "));
  CHECK_THAT(raw_exchange(port, "GET /old?q=1 HTTP/1.0\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 200") && Catch::EndsWith("GET /old?q=1 [] "));
}

TEST_CASE("Expect 100-continue is answered before the body is sent") {
  HttpService s;
  int fd = raw_connect(s.svc.http_port());
  std::string head = "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
  send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  REQUIRE(n > 0);
  CHECK(std::string(buf, static_cast<size_t>(n)) == "HTTP/1.1 100 Continue\r\n\r\n");
  send(fd, "body", 4, MSG_NOSIGNAL);
  n = recv(fd, buf, sizeof buf, 0);
  REQUIRE(n > 0);
  CHECK_THAT(std::string(buf, static_cast<size_t>(n)), Catch::Contains("POST /e? [] body"));
  close(fd);
}

TEST_CASE("bad requests get 400 or 413 or 431 and a throwing handler 500") {
  tern::http::ServerOptions opts;
  opts.max_body_bytes = 100;
  opts.max_header_bytes = 1024;
  HttpService s(opts);
  int port = s.svc.http_port();
  CHECK_THAT(raw_exchange(port, "NONSENSE\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400 "));
  const std::string too_large =
      raw_exchange(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + std::string(101, 'x'));
  CHECK_THAT(too_large, Catch::StartsWith("HTTP/1.1 413 "));
  CHECK_THAT(too_large,
             Catch::EndsWith(R"({"error":{"code":"INVALID_ARGUMENT","message":"request body too large"}})"));
  CHECK_THAT(raw_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'h') + "\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 431 "));
  CHECK_THAT(raw_exchange(port, "GET /throw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 500 "));
  // And the server still answers.
  CHECK_THAT(raw_exchange(port, "GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 200 "));
}

TEST_CASE("a client that stops mid-request gets 408 by the read timeout") {
  tern::http::ServerOptions opts;
  opts.read_timeout = 300ms;
  HttpService s(opts);
  auto start = Clock::now();
  std::string got = raw_exchange(s.svc.http_port(), "GET /half HTTP/1.1\r\nHost: x\r\n");
  CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 408 "));
  CHECK(Clock::now() - start < 300ms + 1s);
}

TEST_CASE("fetch fails UNAVAILABLE when nothing listens and DEADLINE_EXCEEDED when nothing answers") {
  tern::Client client(broker_options());
  // A port that was free a moment ago.
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  const int free_port = ntohs(a.sin_port);
  close(probe);
  auto refused = client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(5s), "http://127.0.0.1:" + std::to_string(free_port) + "/", {});
  });
  CHECK(refused.code() == tern::Code::kUnavailable);

  // Listening, never answering.
  int silent = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_port = 0;
  bind(silent, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(silent, 8);
  getsockname(silent, reinterpret_cast<sockaddr*>(&a), &len);
  auto start = Clock::now();
  auto slow = client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(5s),
                             "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/", {}, 300ms);
  });
  CHECK(slow.code() == tern::Code::kDeadlineExceeded);
  CHECK(Clock::now() - start < 300ms + 500ms);   // generous: CI machines are busy
  close(silent);

  auto bad = client.run([&] { return tern::http::fetch(tern::Context::with_timeout(1s), "ftp://x/", {}); });
  CHECK(bad.code() == tern::Code::kInvalidArgument);
}

TEST_CASE("fetch reads a chunked response and one ended by closing the connection") {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(listener, 8);
  socklen_t len = sizeof a;
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/";
  std::thread server([listener] {
    const char* replies[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        "HTTP/1.0 201 Created\r\n\r\nuntil the end",
    };
    for (const char* reply : replies) {
      int fd = accept(listener, nullptr, nullptr);
      char buf[4096];
      recv(fd, buf, sizeof buf, 0);
      send(fd, reply, std::strlen(reply), MSG_NOSIGNAL);
      close(fd);
    }
  });
  tern::Client client(broker_options());
  auto chunked = client.run([&] { return tern::http::fetch(tern::Context::with_timeout(5s), url, {}); });
  auto closing = client.run([&] { return tern::http::fetch(tern::Context::with_timeout(5s), url, {}); });
  server.join();
  close(listener);
  REQUIRE(chunked.ok());
  CHECK(chunked->body == "abcdefg");
  REQUIRE(closing.ok());
  CHECK(closing->status == 201);
  CHECK(closing->body == "until the end");
}

TEST_CASE("1000 concurrent slow HTTP requests are served by a few threads") {
  // Both ends live in this process: 2000 sockets.
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = std::max<rlim_t>(files.rlim_cur, std::min<rlim_t>(files.rlim_max, 8192));
  setrlimit(RLIMIT_NOFILE, &files);
  REQUIRE(files.rlim_cur >= 2200);
  HttpService s({}, 2);
  tern::Options o = broker_options();
  o.max_in_flight = 2000;
  tern::Client client(o);
  std::atomic<int> ok{0}, peak_threads{0};
  auto start = Clock::now();
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int i = 0; i < 1000; ++i) {
      fibers.emplace_back([&] {
        auto r = tern::http::fetch(tern::Context::with_timeout(20s), s.url + "/slow", {});
        if (r.ok() && r->status == 200) ok.fetch_add(1);
        peak_threads.store(std::max(peak_threads.load(), threads_now()));
      });
    }
    for (auto& f : fibers) f.join();
  });
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  INFO("took " << took.count() << " ms, peak threads " << peak_threads.load());
  CHECK(ok.load() == 1000);
  // Each request sleeps 200 ms; one thread per request would need 1000.
  CHECK(peak_threads.load() < 16);
  CHECK(took < 10s);
}

TEST_CASE("_describe lists the HTTP routes a service registered") {
  tern::Service svc(unique_service("routes"));
  auto handler = [](tern::Context&, const probe::ProbeRequest&) -> tern::Result<probe::ProbeResponse> {
    return probe::ProbeResponse{};
  };
  svc.get("/", "list", handler).post("/", "register", handler).del("/:id", "deregister", handler);
  svc.start(broker_options());
  tern::Client client(broker_options());
  auto d = client.call<tern::v1::DescribeResponse>(tern::Context::with_timeout(5s), svc.name(), "_describe",
                                                   tern::v1::DescribeRequest{});
  svc.stop();
  REQUIRE(d.ok());
  REQUIRE(d->routes_size() == 3);
  CHECK(d->routes(2).method() == "DELETE");
  CHECK(d->routes(2).path() == "/:id");
  CHECK(d->routes(2).endpoint() == "deregister");
  int endpoints = 0;
  for (const auto& e : d->endpoints()) endpoints += e.name() == "list" || e.name() == "deregister";
  CHECK(endpoints == 2);
}

TEST_CASE("every runs its task periodically until stop") {
  tern::Service svc(unique_service("every"));
  std::atomic<int> runs{0};
  svc.every(20ms, [&](tern::Context& ctx) {
    CHECK(ctx.remaining() > 0ms);
    runs.fetch_add(1);
  });
  svc.start(broker_options());
  auto give_up = Clock::now() + 10s;
  while (runs.load() < 5 && Clock::now() < give_up) std::this_thread::sleep_for(5ms);
  svc.stop();
  CHECK(runs.load() >= 5);
  int after_stop = runs.load();
  std::this_thread::sleep_for(100ms);
  CHECK(runs.load() == after_stop);
}

TEST_CASE("connections over max_connections are answered 503 and closed, and a freed place is taken again") {
  tern::http::ServerOptions options;
  options.max_connections = 3;
  HttpService s(options, /*threads=*/2);   // one cap across both threads' listeners
  const int port = s.svc.http_port();
  const std::string get = "GET /held HTTP/1.1\r\nHost: x\r\n\r\n";
  // Three kept-alive connections, each seen served: all three are open.
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(raw_connect(port));
    REQUIRE(send(held.back(), get.data(), get.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(get.size()));
    REQUIRE(read_responses(held.back()).rfind("HTTP/1.1 200", 0) == 0);
  }
  // A fourth, sending nothing: the 503 comes unasked, then the close.
  const int extra = raw_connect(port);
  const std::string refused = read_responses(extra);
  close(extra);
  CHECK(refused.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(refused.find("Retry-After: 1\r\n") != std::string::npos);
  CHECK(refused.find("UNAVAILABLE") != std::string::npos);
  CHECK(tern::metrics::registry().render().find(
            "tern_http_connections_refused_total{service=\"" + s.svc.name() + "\"} 1") != std::string::npos);
  // The held ones are still served.
  REQUIRE(send(held[0], get.data(), get.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(get.size()));
  CHECK(read_responses(held[0]).rfind("HTTP/1.1 200", 0) == 0);
  // One closes: a new connection is served once the server has seen it go.
  close(held.back());
  held.pop_back();
  std::string again;
  for (auto give_up = Clock::now() + 5s; Clock::now() < give_up;) {
    again = raw_exchange(port, "GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if (again.rfind("HTTP/1.1 200", 0) == 0) break;
    std::this_thread::sleep_for(10ms);
  }
  CHECK(again.rfind("HTTP/1.1 200", 0) == 0);
  for (int fd : held) close(fd);
}
