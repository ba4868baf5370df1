// HTTPS: serve_http with a certificate, and http::fetch to it, verifying.
// Certificates come from tests/tls/make_certs.sh, made at run time in a
// temporary directory: a test CA that signed the server's certificate (for
// localhost, 127.0.0.1 and ::1), another CA that signed nothing here, and a
// certificate of the test CA for another name only.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "broker.h"
#include "tern/env.h"
#include "tern/http.h"
#include "tern/metrics.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// The certificates, made once per test run.
struct Certs {
  Certs() {
    char tmpl[] = "/tmp/tern-https-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    const std::string d = "'" + dir + "'";
    REQUIRE(std::system((TERN_SOURCE_DIR "/tests/tls/make_certs.sh " + d).c_str()) == 0);
    // Signed by the test CA, but for elsewhere.test only: a name mismatch
    // for localhost and for 127.0.0.1.
    const std::string elsewhere =
        "cd " + d + " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out elsewhere.key "
        "2>/dev/null && openssl req -new -key elsewhere.key -subj /CN=elsewhere.test -out elsewhere.csr && "
        "printf 'subjectAltName=DNS:elsewhere.test\\nextendedKeyUsage=serverAuth\\n' >elsewhere.ext && "
        "openssl x509 -req -in elsewhere.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 "
        "-extfile elsewhere.ext -out elsewhere.pem 2>/dev/null";
    REQUIRE(std::system(elsewhere.c_str()) == 0);
  }
  ~Certs() { std::system(("rm -rf '" + dir + "'").c_str()); }
  std::string path(const char* name) const { return dir + "/" + name; }
  std::string dir;
};

const Certs& certs() {
  static const Certs c;
  return c;
}

// Echoes method, path and body; counts the requests it served.
struct HttpsService {
  explicit HttpsService(std::string cert = certs().path("server.pem"), std::string key = certs().path("server.key"),
                        tern::http::ServerOptions http = {})
      : svc(unique_service("https")) {
    http.port = 0;
    http.address = "127.0.0.1";
    http.tls_cert_file = std::move(cert);
    http.tls_key_file = std::move(key);
    svc.serve_http(http, [this](tern::Context&, tern::http::Request& req) {
      served.fetch_add(1);
      if (req.path == "/slow") boost::this_fiber::sleep_for(200ms);
      tern::http::Response r;
      r.body = req.method + " " + req.path + " " + req.body;
      return r;
    });
    tern::Options o = broker_options();
    o.threads = 2;
    svc.start(o);
    port = std::to_string(svc.http_port());
  }
  ~HttpsService() { svc.stop(); }
  // tern_http_tls_handshake_failures_total of this service, from /metrics' text.
  std::string handshake_failures() const {
    const std::string text = tern::metrics::registry().render();
    const std::string series = "tern_http_tls_handshake_failures_total{service=\"" + svc.name() + "\"} ";
    size_t at = text.find(series);
    if (at == std::string::npos) return "none";
    return text.substr(at + series.size(), text.find('\n', at) - at - series.size());
  }
  // The count once it reaches `want` (or the last seen, after 5 s): the
  // server counts a failed handshake when it sees the client's alert or
  // close, which may be after the client's fetch has returned.
  std::string await_handshake_failures(const std::string& want) const {
    std::string seen = handshake_failures();
    for (auto until = std::chrono::steady_clock::now() + 5s; seen != want && std::chrono::steady_clock::now() < until;
         seen = handshake_failures())
      std::this_thread::sleep_for(10ms);
    return seen;
  }
  tern::Service svc;
  std::atomic<int> served{0};
  std::string port;
};

tern::Result<tern::http::Response> fetch(tern::Client& client, const std::string& url, const std::string& ca_file,
                                         tern::http::Request req = {}) {
  return client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(5s), url, std::move(req),
                             tern::http::FetchOptions{.timeout = 5s, .connect_timeout = 5s, .ca_file = ca_file});
  });
}

std::string param(const tern::Result<tern::http::Response>& r, const std::string& key) {
  if (r.ok()) return "(a response)";
  auto it = r.error().params.find(key);
  return it == r.error().params.end() ? "" : it->second;
}

// A blocking connection to 127.0.0.1:port; reads time out after 10 s.
int raw_connect(const std::string& port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Everything the peer sends until it closes (or 10 s pass: then "TIMEOUT").
std::string read_to_end(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) return got;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? "TIMEOUT" : got;
    got.append(buf, static_cast<size_t>(n));
  }
}

int threads_now() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

}  // namespace

TEST_CASE("fetch over https with the test CA gets serve_http's response, by address and by name") {
  HttpsService s;
  tern::Client client(broker_options());
  for (std::string host : {"127.0.0.1", "localhost"}) {
    INFO(host);
    tern::http::Request req;
    req.method = "POST";
    req.body = "over TLS";
    auto r = fetch(client, "https://" + host + ":" + s.port + "/hello?x=1", certs().path("ca.pem"), req);
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body == "POST /hello over TLS");
  }
  CHECK(s.served.load() == 2);
  CHECK(s.handshake_failures() == "0");
}

TEST_CASE("large bodies cross TLS both ways whole") {
  HttpsService s;
  tern::Client client(broker_options());
  tern::http::Request req;
  req.method = "PUT";
  req.body.resize(900 * 1024);   // many TLS records, and more than a socket buffer
  for (size_t i = 0; i < req.body.size(); ++i) req.body[i] = static_cast<char>('a' + i % 26);
  const std::string sent = req.body;
  auto r = fetch(client, "https://127.0.0.1:" + s.port + "/big", certs().path("ca.pem"), req);
  REQUIRE(r.ok());
  CHECK(r->body.size() == sent.size() + 9);
  CHECK(r->body == "PUT /big " + sent);
}

TEST_CASE("fetch over https refuses a certificate no trusted CA signed, as untrusted_certificate") {
  HttpsService s;
  tern::Client client(broker_options());
  const std::string url = "https://127.0.0.1:" + s.port + "/";
  auto other = fetch(client, url, certs().path("other-ca.pem"));
  CHECK(other.code() == tern::Code::kUnavailable);
  CHECK(param(other, "stage") == "tls");
  CHECK(param(other, "tls") == "untrusted_certificate");
  if (!other.ok()) {
    CHECK_FALSE(other.error().retryable);
    CHECK_THAT(other.error().message, Catch::Contains("certificate verify failed"));
  }
  // The system's store (no ca_file) does not hold the test CA either.
  auto system = fetch(client, url, "");
  CHECK(param(system, "tls") == "untrusted_certificate");
  CHECK(s.served.load() == 0);
  // The server's side of it: two failed handshakes.
  CHECK(s.await_handshake_failures("2") == "2");
}

TEST_CASE("fetch over https refuses a certificate that names another host, as name_mismatch") {
  HttpsService s(certs().path("elsewhere.pem"), certs().path("elsewhere.key"));
  tern::Client client(broker_options());
  for (std::string host : {"localhost", "127.0.0.1"}) {
    INFO(host);
    auto r = fetch(client, "https://" + host + ":" + s.port + "/", certs().path("ca.pem"));
    CHECK(r.code() == tern::Code::kUnavailable);
    CHECK(param(r, "stage") == "tls");
    CHECK(param(r, "tls") == "name_mismatch");
  }
  CHECK(s.served.load() == 0);
}

TEST_CASE("fetch over https to a plain HTTP port fails as a TLS handshake error") {
  tern::Service plain(unique_service("plain"));
  std::atomic<int> served{0};
  tern::http::ServerOptions http;
  http.port = 0;
  http.read_timeout = 300ms;   // the ClientHello is no HTTP head: 408 after this
  plain.serve_http(http, [&](tern::Context&, tern::http::Request&) {
    served.fetch_add(1);
    return tern::http::Response{};
  });
  plain.start(broker_options());
  tern::Client client(broker_options());
  auto r = fetch(client, "https://127.0.0.1:" + std::to_string(plain.http_port()) + "/", certs().path("ca.pem"));
  plain.stop();
  CHECK(r.code() == tern::Code::kUnavailable);
  CHECK(param(r, "stage") == "tls");
  CHECK(param(r, "tls") == "handshake");
  CHECK(served.load() == 0);
}

TEST_CASE("a plain HTTP request to the HTTPS port is closed unserved and counted") {
  HttpsService s;
  int fd = raw_connect(s.port);
  const std::string request = "GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  const std::string got = read_to_end(fd);
  close(fd);
  CHECK(got != "TIMEOUT");                           // closed
  CHECK_THAT(got, !Catch::Contains("HTTP/1."));      // not answered as HTTP
  CHECK_THAT(got, !Catch::Contains("/secret"));
  CHECK(s.served.load() == 0);
  CHECK(s.await_handshake_failures("1") == "1");
  // And the port still serves HTTPS.
  tern::Client client(broker_options());
  auto r = fetch(client, "https://127.0.0.1:" + s.port + "/after", certs().path("ca.pem"));
  REQUIRE(r.ok());
  CHECK(r->body == "GET /after ");
}

TEST_CASE("a TLS handshake that never finishes is closed at read_timeout, the other connections served") {
  tern::http::ServerOptions http;
  http.read_timeout = 300ms;
  HttpsService s(certs().path("server.pem"), certs().path("server.key"), http);
  int silent = raw_connect(s.port);   // connects, says nothing
  const auto start = Clock::now();
  tern::Client client(broker_options());
  auto r = fetch(client, "https://127.0.0.1:" + s.port + "/meanwhile", certs().path("ca.pem"));
  REQUIRE(r.ok());
  CHECK(r->body == "GET /meanwhile ");
  CHECK(read_to_end(silent).empty());   // closed by the server, not by the 10 s receive timeout
  const auto took = Clock::now() - start;
  close(silent);
  CHECK(took >= 250ms);
  CHECK(took < 300ms + 1500ms);   // generous: a busy 2-core machine
  CHECK(s.await_handshake_failures("1") == "1");
}

TEST_CASE("fetch gives up on a TLS handshake nobody answers at connect_timeout") {
  // Listening, never accepting: TCP connects, the ClientHello gets nothing back.
  int silent = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(silent, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(silent, 8) == 0);
  socklen_t len = sizeof a;
  getsockname(silent, reinterpret_cast<sockaddr*>(&a), &len);
  tern::Client client(broker_options());
  const auto start = Clock::now();
  auto r = client.run([&] {
    return tern::http::fetch(tern::Context::with_timeout(10s), "https://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/",
                             {}, tern::http::FetchOptions{.timeout = 5s, .connect_timeout = 300ms,
                                                          .ca_file = certs().path("ca.pem")});
  });
  const auto took = Clock::now() - start;
  close(silent);
  CHECK(r.code() == tern::Code::kDeadlineExceeded);
  if (!r.ok()) CHECK_THAT(r.error().message, Catch::Contains("TLS handshake"));
  CHECK(took >= 250ms);
  CHECK(took < 300ms + 1s);   // generous: a busy 2-core machine
}

TEST_CASE("300 concurrent slow HTTPS requests are served by a few threads") {
  HttpsService s;
  tern::Options o = broker_options();
  o.max_in_flight = 1000;
  tern::Client client(o);
  std::atomic<int> ok{0}, peak_threads{0};
  const auto start = Clock::now();
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int i = 0; i < 300; ++i)
      fibers.emplace_back([&] {
        auto r = tern::http::fetch(tern::Context::with_timeout(20s), "https://127.0.0.1:" + s.port + "/slow", {},
                                   tern::http::FetchOptions{.timeout = 20s, .ca_file = certs().path("ca.pem")});
        if (r.ok() && r->status == 200) ok.fetch_add(1);
        peak_threads.store(std::max(peak_threads.load(), threads_now()));
      });
    for (auto& f : fibers) f.join();
  });
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  INFO("took " << took.count() << " ms, peak threads " << peak_threads.load());
  CHECK(ok.load() == 300);
  // Server and client in this process; a thread per connection would be 600.
  CHECK(peak_threads.load() < 16);
  // Each sleeps 200 ms in the handler; handshakes and requests in series
  // would take a minute.
  CHECK(took < 10s);
}

TEST_CASE("a CA file replaced on disk is read again by the next fetch") {
  HttpsService s;
  tern::Client client(broker_options());
  const std::string ca = certs().path("rotating-ca.pem");
  auto copy = [&](const char* from) {
    std::ifstream in(certs().path(from), std::ios::binary);
    std::ofstream out(ca, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  };
  const std::string url = "https://127.0.0.1:" + s.port + "/";
  copy("other-ca.pem");
  CHECK(param(fetch(client, url, ca), "tls") == "untrusted_certificate");
  copy("ca.pem");
  auto r = fetch(client, url, ca);
  CHECK(r.ok());
}

// A TLS server in Python that answers HTTP/1.0 with a body ended by closing
// the connection: after a close_notify (`unwrap`) or a bare TCP close.
struct ClosingTlsServer {
  explicit ClosingTlsServer(bool close_notify) {
    const std::string port_file = certs().path(close_notify ? "notify.port" : "bare.port");
    std::remove(port_file.c_str());
    const std::string script =
        "import socket, ssl, sys\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1); l.settimeout(30)\n"
        "open(sys.argv[3] + '.tmp', 'w').write(str(l.getsockname()[1]))\n"
        "import os; os.rename(sys.argv[3] + '.tmp', sys.argv[3])\n"
        "c = ctx.wrap_socket(l.accept()[0], server_side=True)\n"
        "c.recv(65536)\n"
        "c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nall of the body')\n"
        "c.unwrap().close() if sys.argv[4] == '1' else c.close()\n";
    const std::string cmd = "/usr/bin/python3 -c \"" + script + "\" '" + certs().path("server.pem") + "' '" +
                            certs().path("server.key") + "' '" + port_file + "' " + (close_notify ? "1" : "0") +
                            " &";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const auto give_up = Clock::now() + 10s;
    while (Clock::now() < give_up) {
      std::ifstream in(port_file);
      if (in >> port) break;
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE(!port.empty());
  }
  std::string port;
};

TEST_CASE("over https a body ended by the connection counts only if it ends with close_notify") {
  tern::Client client(broker_options());
  ClosingTlsServer notify(true);
  auto whole = fetch(client, "https://127.0.0.1:" + notify.port + "/", certs().path("ca.pem"));
  REQUIRE(whole.ok());
  CHECK(whole->body == "all of the body");
  ClosingTlsServer bare(false);
  auto cut = fetch(client, "https://127.0.0.1:" + bare.port + "/", certs().path("ca.pem"));
  CHECK(cut.code() == tern::Code::kUnavailable);
  CHECK(param(cut, "stage") == "response");
}

TEST_CASE("a CA file that cannot be loaded is FAILED_PRECONDITION for fetch and a ConfigError at start-up") {
  tern::Client client(broker_options());
  const std::string missing = certs().path("no-such-ca.pem");
  auto r = fetch(client, "https://127.0.0.1:1/", missing);
  CHECK(r.code() == tern::Code::kFailedPrecondition);
  // A key is not a CA certificate.
  CHECK_THROWS_AS(tern::http::check_ca_file("TERN_X_CA_FILE", certs().path("server.key")), tern::ConfigError);
  CHECK_THROWS_WITH(tern::http::check_ca_file("TERN_X_CA_FILE", missing), Catch::StartsWith("TERN_X_CA_FILE='"));
  CHECK_NOTHROW(tern::http::check_ca_file("TERN_X_CA_FILE", certs().path("ca.pem")));
}

TEST_CASE("serve_http with a key that does not match its certificate does not start") {
  tern::Service svc(unique_service("https-bad"));
  tern::http::ServerOptions http;
  http.port = 0;
  http.tls_cert_file = certs().path("server.pem");
  http.tls_key_file = certs().path("elsewhere.key");
  svc.serve_http(http, [](tern::Context&, tern::http::Request&) { return tern::http::Response{}; });
  CHECK_THROWS_AS(svc.start(broker_options()), tern::ConfigError);
}
