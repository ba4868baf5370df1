// What one message can do to a connection: nothing. Names too long for AMQP
// are refused alone with a typed error, and a long note on a message (an
// error text in a dead letter's header) is cut to fit rather than dropping
// the connection and the message with it. Dead-letter queues are held to a
// length, and what they refuse is neither looped on nor (events) lost.
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <future>
#include <map>
#include <string>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "rabbit_ctl.h"
#include "tern/metrics.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;

TEST_CASE("a call to a service name over 255 bytes is INVALID_ARGUMENT and calls in flight beside it finish") {
  const std::string name = unique_service("limits");
  tern::Service svc(name);
  std::atomic<bool> running{false};
  svc.handle("probe", [&](tern::Context&, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    if (req.sleep_ms() > 0) running = true;
    boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
    return ProbeResponse{};
  });
  svc.start(broker_options());
  tern::Client client(broker_options());
  auto slow = std::async(std::launch::async, [&] {
    ProbeRequest req;
    req.set_sleep_ms(500);
    return client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", req).code();
  });
  // The slow call is in flight (its handler runs) before the bad one goes.
  for (auto until = std::chrono::steady_clock::now() + 5s; !running && std::chrono::steady_clock::now() < until;)
    std::this_thread::yield();
  REQUIRE(running);
  const std::string long_name(300, 's');
  auto bad = client.call<ProbeResponse>(tern::Context::with_timeout(5s), long_name, "probe", ProbeRequest{});
  CHECK(bad.code() == tern::Code::kInvalidArgument);
  CHECK(bad.error().message.find("300 bytes") != std::string::npos);
  auto bad_endpoint = client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, std::string(256, 'e'),
                                                 ProbeRequest{});
  CHECK(bad_endpoint.code() == tern::Code::kInvalidArgument);
  CHECK(slow.get() == tern::Code::kOk);
  CHECK(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", ProbeRequest{}).ok());
}

TEST_CASE("a call naming a service or endpoint that is not UTF-8 is INVALID_ARGUMENT and never sent") {
  const std::string name = unique_service("limits");
  tern::Service svc(name);
  svc.handle("probe", [](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> { return ProbeResponse{}; });
  svc.start(broker_options());
  tern::Client client(broker_options());
  auto bad_endpoint = client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe\xff", ProbeRequest{});
  CHECK(bad_endpoint.code() == tern::Code::kInvalidArgument);
  CHECK(bad_endpoint.error().message.find("UTF-8") != std::string::npos);
  auto bad_service = client.call<ProbeResponse>(tern::Context::with_timeout(5s), name + "\xc0", "probe", ProbeRequest{});
  CHECK(bad_service.code() == tern::Code::kInvalidArgument);
  CHECK(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", ProbeRequest{}).ok());
  // Sent, the envelope would not parse there, and would be dead-lettered
  // before its answer came back.
  CHECK(rabbit::queue_field(name + ".dead-letter", "messages") == "0");
}

TEST_CASE("an event dead-lettered with a 5,000-byte error keeps its body and gets the error cut to 1 KiB") {
  const std::string name = unique_service("limits");
  std::atomic<int> runs{0};
  tern::Service svc(name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop&) -> tern::Error {
    runs.fetch_add(1);
    return tern::Error{tern::Code::kInvalidArgument, "no: " + std::string(5000, 'x')};
  });
  tern::Options o = broker_options();
  o.event_attempts = 2;   // a retry copy, then the dead letter: both carry the long error
  o.event_retry_ms = 50;
  svc.start(o);
  const std::string marker = "limits-" + tern::new_span_id();
  tern::Client client(broker_options());
  client.run([&] {
    probe::Hop hop;
    hop.set_service(marker);
    REQUIRE(tern::publish(tern::Context::with_timeout(5s), hop).ok());
  });
  Inspector broker;
  std::map<std::string, std::string> headers;
  auto dead = broker.await(name + ".on.probe.hop.dead-letter", 10s, &headers);
  REQUIRE(dead.has_value());
  CHECK(dead->find(marker) != std::string::npos);
  CHECK(headers["x-tern-error"].rfind("INVALID_ARGUMENT", 0) == 0);
  CHECK(headers["x-tern-error"].size() <= 1024);
  CHECK(runs.load() == 2);
  // The service's connections outlived it: it still handles events.
  client.run([&] { REQUIRE(tern::publish(tern::Context::with_timeout(5s), probe::Hop{}).ok()); });
  CHECK(broker.await(name + ".on.probe.hop.dead-letter", 10s).has_value());
}

// --- dead-letter queues are bounded ---

namespace {

// `name` as a literal in a policy's pattern.
std::string escaped(const std::string& name) {
  std::string out;
  for (char c : name) out += c == '.' ? std::string("\\\\.") : std::string(1, c);
  return out;
}

// A policy of the test's own that holds `queue` to one message and refuses
// the next: the limit tern-dead-letters sets, made small. Gone at scope end.
struct OneMessageLimit {
  explicit OneMessageLimit(const std::string& queue) : name("test-limit-" + tern::new_span_id()) {
    REQUIRE(rabbit::ctl("set_policy --priority 1 --apply-to queues " + name + " \"^" + escaped(queue) +
                        "$\" \"{\\\"max-length\\\":1,\\\"overflow\\\":\\\"reject-publish\\\"}\"") == 0);
  }
  ~OneMessageLimit() { rabbit::ctl("clear_policy " + name); }
  const std::string name;
};

int refused_count(const std::string& service, const std::string& queue) {
  const std::string text = tern::metrics::registry().render();
  const std::string key =
      "tern_dead_letters_refused_total{service=\"" + service + "\",queue=\"" + queue + "\"} ";
  const size_t at = text.find(key);
  return at == std::string::npos ? 0 : std::stoi(text.substr(at + key.size()));
}

template <class F>
bool eventually(F&& f, std::chrono::milliseconds timeout = 10s) {
  for (auto until = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < until;) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

}  // namespace

TEST_CASE("every dead-letter queue a service declares gets the tern-dead-letters length limit") {
  const std::string name = unique_service("limits");
  tern::Service svc(name);
  svc.handle("probe", [](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> { return ProbeResponse{}; });
  svc.subscribe<probe::Hop>("probe.hop", [](tern::Context&, const probe::Hop&) { return tern::Error{}; });
  svc.start(broker_options());
  for (const std::string& q : {name + ".dead-letter", name + ".on.probe.hop.dead-letter"}) {
    INFO(q);
    CHECK(rabbit::queue_field(q, "policy") == "tern-dead-letters");
  }
  const std::string policies = rabbit::output("list_policies");
  const size_t at = policies.find("tern-dead-letters");
  REQUIRE(at != std::string::npos);
  const std::string policy = policies.substr(at, policies.find('\n', at) - at);
  CHECK(policy.find(R"("max-length":100000)") != std::string::npos);
  CHECK(policy.find(R"("max-length-bytes":268435456)") != std::string::npos);
  CHECK(policy.find(R"("overflow":"reject-publish")") != std::string::npos);
  // Only dead-letter queues: a request queue is not held to that length.
  CHECK(rabbit::queue_field(name, "policy").empty());
}

TEST_CASE("a request its full dead-letter queue refuses is dropped and counted, not requeued in a loop") {
  const std::string name = unique_service("limits");
  const std::string dead = name + ".dead-letter";
  const OneMessageLimit limit(dead);
  tern::Service svc(name);
  svc.handle("probe", [](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> { return ProbeResponse{}; });
  svc.start(broker_options());
  Inspector broker;
  // No reply_to: nobody to answer, so each goes to the dead-letter queue.
  broker.publish(name, "first");
  REQUIRE(eventually([&] { return rabbit::queue_field(dead, "messages") == "1"; }));
  broker.publish(name, "second");
  REQUIRE(eventually([&] { return refused_count(name, dead) == 1; }));
  // Settled: nothing left in the request queue, ready or unacked, and it
  // stays so (a requeued copy would be back within milliseconds).
  CHECK(eventually([&] { return rabbit::queue_field(name, "messages") == "0"; }));
  tern::Client client(broker_options());
  CHECK(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", ProbeRequest{}).ok());
  CHECK(rabbit::queue_field(name, "messages") == "0");
  CHECK(refused_count(name, dead) == 1);
  auto kept = broker.get(dead);
  REQUIRE(kept.has_value());
  CHECK(*kept == "first");
}

TEST_CASE("an event its full dead-letter queue refuses waits in the last retry queue and lands once there is room") {
  const std::string name = unique_service("limits");
  const std::string dead = name + ".on.probe.hop.dead-letter";
  const OneMessageLimit limit(dead);
  std::atomic<int> runs{0};
  tern::Service svc(name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop&) -> tern::Error {
    runs.fetch_add(1);
    return tern::Error{tern::Code::kUnavailable, "not today"};
  });
  tern::Options o = broker_options();
  o.event_attempts = 2;
  o.event_retry_ms = 50;
  svc.start(o);
  const std::string first = "first-" + tern::new_span_id(), second = "second-" + tern::new_span_id();
  tern::Client client(broker_options());
  auto publish = [&](const std::string& marker) {
    client.run([&] {
      probe::Hop hop;
      hop.set_service(marker);
      REQUIRE(tern::publish(tern::Context::with_timeout(5s), hop).ok());
    });
  };
  publish(first);
  REQUIRE(eventually([&] { return rabbit::queue_field(dead, "messages") == "1"; }));
  publish(second);
  REQUIRE(eventually([&] { return refused_count(name, dead) >= 2; }));
  // Held, not dropped: it keeps coming back while the queue is full...
  const int before = runs.load();
  CHECK(eventually([&] { return runs.load() >= before + 2; }));
  // ...and lands once an operator takes the first one out.
  Inspector broker;
  auto taken = broker.get(dead);
  REQUIRE(taken.has_value());
  CHECK(taken->find(first) != std::string::npos);
  auto landed = broker.await(dead, 10s);
  REQUIRE(landed.has_value());
  CHECK(landed->find(second) != std::string::npos);
}
