// amqps://, against a TLS-only private RabbitMQ node (tests/tls/tls_node.sh
// starts it with certificates tests/tls/make_certs.sh made for this run):
// the broker's certificate verified, wrong CAs and names refused, plain
// AMQP refused, and the EXTERNAL mechanism's user as the verified caller.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>

#include "../integration/rabbit_ctl.h"
#include "probe.pb.h"
#include "tern/tern.h"
#include "transport/amqp/connection.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) FAIL(std::string(name) + " is not set: run through tests/tls/tls_node.sh");
  return v;
}
std::string certs() { return env("TERN_TLS_CERTS"); }
// host:port of the node's TLS listener, from its amqps:// URL.
std::string address() {
  const std::string url = env("TERN_AMQP_URL");
  const size_t at = url.find('@') + 1;
  return url.substr(at, url.find('/', at) - at);
}
// The login TERN_AMQP_URL names (tern-admin's: the node has no guest), "user:password@".
std::string admin_login() {
  const std::string url = env("TERN_AMQP_URL");
  const size_t from = url.find("://") + 3;
  return url.substr(from, url.find('@') + 1 - from);
}
std::string url(const std::string& query, const std::string& login = admin_login()) {
  return "amqps://" + login + address() + "/?" + query;
}
tern::Options options(const std::string& amqp_url) {
  tern::Options o = tern::Options::from_env();
  o.amqp_url = amqp_url;
  o.threads = 1;
  return o;
}
// What connecting to `u` throws, or "(connected)".
std::string connect_error(const std::string& u) {
  try {
    tern::detail::AmqpConnection c(u, 0, "tls test");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(connected)";
}

}  // namespace

TEST_CASE("amqps: a call and a confirmed event go over TLS, the broker's certificate verified against the CA") {
  const std::string name = "test.tls." + tern::new_span_id();
  const tern::Options o = options(url("cacertfile=" + certs() + "/ca.pem"));
  std::mutex mu;
  std::condition_variable cv;
  std::string event_seen;
  tern::Service svc(name);
  svc.handle("probe", [](tern::Context&, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    ProbeResponse rsp;
    rsp.set_payload(req.payload());
    return rsp;
  });
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) -> tern::Error {
    std::lock_guard<std::mutex> lock(mu);
    event_seen = hop.service();
    cv.notify_all();
    return tern::ok();
  });
  svc.start(o);

  tern::Client client(o, "test.tls.client");
  auto ctx = tern::Context::with_timeout(5s);
  ProbeRequest req;
  req.set_payload(std::string(200000, 'x'));   // several TLS records, and frames
  auto rsp = client.call<ProbeResponse>(ctx, name, "probe", req);
  REQUIRE(rsp.ok());
  CHECK(rsp.value().payload() == req.payload());
  const std::string marker = "tls-" + tern::new_span_id();
  client.run([&] {
    probe::Hop hop;
    hop.set_service(marker);
    REQUIRE(tern::publish(tern::Context::with_timeout(5s), hop).ok());   // confirmed over TLS
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return event_seen == marker; }));
  }
  // The broker's own view: every connection it has is TLS.
  const std::string conns = rabbit::output("list_connections ssl ssl_protocol");
  INFO(conns);
  CHECK(conns.find("true\ttlsv1.") != std::string::npos);
  CHECK(conns.find("false") == std::string::npos);
}

TEST_CASE("amqps: a broker certificate that another CA signed is refused") {
  const std::string why = connect_error(url("cacertfile=" + certs() + "/other-ca.pem"));
  CHECK(why.find("certificate verify failed") != std::string::npos);
  // Encryption without authentication only when asked for by name.
  CHECK(connect_error(url("cacertfile=" + certs() + "/other-ca.pem&verify=verify_none")) == "(connected)");
}

TEST_CASE("amqps: a certificate for another host name is refused") {
  const std::string why =
      connect_error(url("cacertfile=" + certs() + "/ca.pem&server_name_indication=broker.example.org"));
  CHECK(why.find("certificate verify failed") != std::string::npos);
  CHECK(connect_error(url("cacertfile=" + certs() + "/ca.pem&server_name_indication=localhost")) == "(connected)");
}

TEST_CASE("amqps: the node takes no plain AMQP, and a plain client at its port gets no session") {
  const std::string listeners = rabbit::output("eval \"rabbit_networking:active_listeners().\"");
  INFO(listeners);
  CHECK(listeners.find("'amqp/ssl'") != std::string::npos);
  CHECK(listeners.find("protocol = amqp,") == std::string::npos);
  const std::string why = connect_error("amqp://" + admin_login() + address() + "/");
  CHECK(why.find("cannot log in") != std::string::npos);
}

TEST_CASE("amqps: EXTERNAL logs in as the client certificate's CN, which servers see as the verified caller") {
  const std::string user = "tls.client";   // tls_node.sh made its certificate
  REQUIRE(rabbit::ctl("add_user " + user + " unused") == 0);
  REQUIRE(rabbit::ctl("clear_password " + user) == 0);   // no password: the certificate only
  REQUIRE(rabbit::ctl("set_permissions -p / " + user + " \".*\" \".*\" \".*\"") == 0);
  const std::string dir = certs();
  const tern::Options o = options(url("cacertfile=" + dir + "/ca.pem&certfile=" + dir + "/client-tls.client.pem&keyfile=" +
                                          dir + "/client-tls.client.key&auth_mechanism=external",
                                      ""));
  const std::string name = "test.tls.external." + tern::new_span_id();
  std::mutex mu;
  std::string caller;
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    std::lock_guard<std::mutex> lock(mu);
    caller = ctx.caller();
    return ProbeResponse{};
  });
  svc.start(options(url("cacertfile=" + dir + "/ca.pem")));
  tern::Client client(o, "test.tls.external");
  REQUIRE(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", ProbeRequest{}).ok());
  std::lock_guard<std::mutex> lock(mu);
  CHECK(caller == user);
  // Without the certificate there is no EXTERNAL login.
  CHECK(connect_error(url("cacertfile=" + dir + "/ca.pem", user + ":@")).find("ACCESS_REFUSED") != std::string::npos);
  rabbit::ctl("delete_user " + user);
}
