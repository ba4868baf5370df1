// Verified callers, over a real broker with broker users of the test's own:
// every request and event carries the user_id of its connection, which
// RabbitMQ checks, so a service can decide on who calls it.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "rabbit_ctl.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;

namespace {

// A broker user of this test's own, with every permission on "/": what it
// may do is not the point here, who it is is. Deleted at the end.
struct BrokerUser {
  std::string name = "test.user." + tern::new_span_id().substr(0, 8);
  std::string password = tern::new_trace_id();
  BrokerUser() {
    REQUIRE(rabbit::ctl("add_user " + name + " " + password) == 0);
    REQUIRE(rabbit::ctl("set_permissions -p / " + name + " \".*\" \".*\" \".*\"") == 0);
  }
  ~BrokerUser() { rabbit::ctl("delete_user " + name); }
  // broker_options() logged in as this user (as TERN_AMQP_USER and
  // TERN_AMQP_PASSWORD would have it).
  tern::Options options() const {
    tern::Options o = broker_options();
    o.amqp_user = name;
    o.amqp_password = password;
    return o;
  }
};

}  // namespace

TEST_CASE("an endpoint names who may call it, by the broker-verified user, not the declared name") {
  BrokerUser allowed, other;
  const std::string name = unique_service("callers");
  std::atomic<int> runs{0};
  std::mutex mu;
  std::string seen_caller, seen_declared;
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    runs.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    seen_caller = ctx.caller();
    seen_declared = ctx.declared_caller();
    return ProbeResponse{};
  });
  svc.allow_callers("probe", {allowed.name});
  svc.start(broker_options());

  tern::Client good(allowed.options(), "test.good");
  auto ctx = tern::Context::with_timeout(5s);
  REQUIRE(good.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(seen_caller == allowed.name);
    CHECK(seen_declared == "test.good");
  }
  // Declaring the allowed user's name as its own changes nothing.
  tern::Client bad(other.options(), allowed.name);
  auto refused = bad.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  CHECK(refused.code() == tern::Code::kPermissionDenied);
  CHECK(refused.error().message.find(other.name) != std::string::npos);
  tern::Client admin(broker_options());   // the node's administrator, tern-admin: not on the list either
  CHECK(admin.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).code() == tern::Code::kPermissionDenied);
  CHECK(runs.load() == 1);
}

TEST_CASE("the broker refuses a request whose user_id is not its connection's") {
  BrokerUser allowed, other;
  const std::string name = unique_service("forged");
  std::atomic<int> runs{0};
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    runs.fetch_add(1);
    return ProbeResponse{};
  });
  svc.allow_callers("probe", {allowed.name});
  svc.start(broker_options());

  // By hand, logged in as `other`, claiming to be `allowed`.
  const std::string url = std::getenv("TERN_AMQP_URL");
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  REQUIRE(amqp_parse_url(buf.data(), &info) == AMQP_STATUS_OK);
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  REQUIRE(amqp_socket_open(socket, info.host, info.port) == AMQP_STATUS_OK);
  REQUIRE(amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, other.name.c_str(), other.password.c_str())
              .reply_type == AMQP_RESPONSE_NORMAL);
  amqp_channel_open(conn, 1);
  REQUIRE(amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL);
  tern::v1::Request req;
  req.set_id("forged-request");
  req.set_endpoint("probe");
  req.set_deadline_unix_ms(tern::to_unix_ms(tern::Context::Clock::now() + 5s));
  req.set_body(ProbeRequest{}.SerializeAsString());
  const std::string body = req.SerializeAsString();
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_USER_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
  props.user_id = amqp_cstring_bytes(allowed.name.c_str());
  props.reply_to = amqp_cstring_bytes("amq.gen-forged");
  props.correlation_id = amqp_cstring_bytes("forged-request");
  REQUIRE(amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(name.c_str()), 0, 0, &props,
                             amqp_bytes_t{body.size(), const_cast<char*>(body.data())}) == AMQP_STATUS_OK);
  // The broker's answer: the channel closed, PRECONDITION_FAILED.
  amqp_basic_qos(conn, 1, 0, 1, 0);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
  REQUIRE(r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION);
  REQUIRE(r.reply.id == AMQP_CHANNEL_CLOSE_METHOD);
  CHECK(static_cast<amqp_channel_close_t*>(r.reply.decoded)->reply_code == 406);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);

  // The same user honestly: refused by the service, and the forged one never ran.
  tern::Client honest(other.options());
  auto ctx = tern::Context::with_timeout(5s);
  CHECK(honest.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).code() == tern::Code::kPermissionDenied);
  tern::Client good(allowed.options());
  CHECK(good.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).ok());
  CHECK(runs.load() == 1);
}

TEST_CASE("a subscriber can require a publisher: others' events are dead-lettered, retries keep the publisher") {
  BrokerUser publisher, other;
  const std::string name = unique_service("subscriber");
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> handled;   // (hop.service, ctx.caller())
  tern::Service svc(name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context& ctx, const probe::Hop& hop) -> tern::Error {
    std::lock_guard<std::mutex> lock(mu);
    handled.emplace_back(hop.service(), ctx.caller());
    // The first try of the good event fails: its retry is a copy this
    // service publishes, which must still name the original publisher.
    if (ctx.attempt() == 1) return tern::Error{tern::Code::kUnavailable, "try again"};
    return tern::ok();
  });
  svc.require_publishers("probe.hop", {publisher.name});
  tern::Options o = broker_options();
  o.event_retry_ms = 50;
  svc.start(o);

  const std::string good_id = "good-" + tern::new_span_id(), bad_id = "bad-" + tern::new_span_id();
  for (auto [user, id] : {std::pair{&publisher, good_id}, std::pair{&other, bad_id}}) {
    tern::Client client(user->options());
    client.run([&, id = id] {
      probe::Hop hop;
      hop.set_service(id);
      REQUIRE(tern::publish(tern::Context::with_timeout(5s), hop).ok());
    });
  }
  Inspector broker;
  std::map<std::string, std::string> headers;
  auto dead = broker.await(name + ".on.probe.hop.dead-letter", 10s, &headers);
  REQUIRE(dead.has_value());
  CHECK(headers["x-tern-error"].find("PERMISSION_DENIED") != std::string::npos);
  CHECK(headers["x-tern-on-behalf-of"] == other.name);
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (handled.size() >= 2) break;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(handled.size() == 2);
  for (const auto& [id, caller] : handled) {
    CHECK(id == good_id);
    CHECK(caller == publisher.name);
  }
}

TEST_CASE("a request whose reply_to names a queue is dead-lettered and nothing is published into that queue") {
  const std::string name = unique_service("reply-to");
  std::atomic<int> runs{0};
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    runs.fetch_add(1);
    return ProbeResponse{};
  });
  svc.start(broker_options());
  Inspector broker;
  // A good request whose reply_to names a queue (here one of the
  // inspector's, bound to nothing that is sent): refused, and no reply is
  // published into it.
  const std::string victim = broker.bind("test.nothing.is.sent.here");
  tern::v1::Request req;
  req.set_id("request-with-a-named-reply-to");
  req.set_endpoint("probe");
  req.set_deadline_unix_ms(tern::to_unix_ms(tern::Context::Clock::now() + 5s));
  req.set_body(ProbeRequest{}.SerializeAsString());
  broker.publish(name, req.SerializeAsString(), victim);
  std::map<std::string, std::string> headers;
  auto dead = broker.await(name + ".dead-letter", 5s, &headers);
  REQUIRE(dead.has_value());
  CHECK(headers["x-tern-reason"].starts_with("reply_to is not a caller's reply queue"));
  CHECK_FALSE(broker.get(victim).has_value());
  CHECK(runs.load() == 0);
}

TEST_CASE("a caller's credentials stay with the service it sent them to: none in its calls, events or dead letters") {
  const std::string a = unique_service("creds.a"), b = unique_service("creds.b");
  const std::string secret = "Bearer secret-" + tern::new_span_id();
  std::mutex mu;
  std::string a_credential, a_metadata_auth, b_auth, b_user, event_auth, event_user;
  std::condition_variable event_seen;
  tern::Service sb(b);
  sb.handle("probe", [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    std::lock_guard<std::mutex> lock(mu);
    b_auth = ctx.credential("authorization") ? *ctx.credential("authorization") : "";
    if (auto it = ctx.metadata().find("authorization"); it != ctx.metadata().end()) b_auth += it->second;
    if (auto it = ctx.metadata().find("user"); it != ctx.metadata().end()) b_user = it->second;
    return ProbeResponse{};
  });
  sb.subscribe<probe::Hop>("probe.hop", [&](tern::Context& ctx, const probe::Hop&) -> tern::Error {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = ctx.metadata().find("authorization"); it != ctx.metadata().end()) event_auth = it->second;
    if (auto it = ctx.metadata().find("user"); it != ctx.metadata().end()) event_user = it->second;
    event_seen.notify_all();
    return tern::ok();
  });
  sb.start(broker_options());
  tern::Service sa(a);
  sa.handle("probe", [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    {
      std::lock_guard<std::mutex> lock(mu);
      a_credential = ctx.credential("authorization") ? *ctx.credential("authorization") : "";
      a_metadata_auth = ctx.metadata().count("authorization") ? "present" : "";
    }
    auto down = tern::call<ProbeResponse>(ctx, b, "probe", ProbeRequest{});
    if (!down.ok()) return down.error();
    if (tern::Error e = tern::publish(ctx, probe::Hop{}); !e.ok()) return e;
    return ProbeResponse{};
  });
  sa.start(broker_options());

  tern::Client client(broker_options());
  auto ctx = tern::Context::with_timeout(5s);
  ctx.set_metadata("authorization", secret);
  ctx.set_metadata("user", "ada");
  REQUIRE(client.call<ProbeResponse>(ctx, a, "probe", ProbeRequest{}).ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(event_seen.wait_for(lock, 10s, [&] { return event_user == "ada"; }));
    CHECK(a_credential == secret);     // the service it was sent to can check it
    CHECK(a_metadata_auth.empty());    // ...where nothing passes it on
    CHECK(b_user == "ada");            // other metadata travels
    CHECK(b_auth.empty());
    CHECK(event_auth.empty());
  }
  // A request a cannot parse (a string field that is not UTF-8) is
  // dead-lettered without the credentials it came with.
  probe::Hop not_a_probe;
  not_a_probe.set_service("\xFF\xFE");
  auto refused = client.call<ProbeResponse>(ctx, a, "probe", not_a_probe);
  CHECK_FALSE(refused.ok());
  Inspector broker;
  auto dead = broker.await(a + ".dead-letter", 10s);
  REQUIRE(dead.has_value());
  CHECK(dead->find("secret-") == std::string::npos);
  tern::v1::Request kept;
  REQUIRE(kept.ParseFromString(*dead));
  CHECK(kept.metadata().at("user") == "ada");
  CHECK(kept.metadata().count("authorization") == 0);
}
