// Subscribing to events: fan-out to services, load split among instances,
// retries with backoff and the dead-letter queue.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

tern::Options options() {
  tern::Options o = broker_options();
  o.event_retry_ms = 50;
  return o;
}

std::string unique(const std::string& what) { return unique_service(what); }

bool await_count(const std::atomic<int>& n, int want, std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  while (n.load() < want && Clock::now() < until) std::this_thread::sleep_for(5ms);
  return n.load() >= want;
}

// Publishes `count` Hop events marked with `marker` (handlers ignore others).
void publish_hops(const std::string& marker, int count) {
  tern::Client client(options());
  client.run([&] {
    for (int i = 0; i < count; ++i) {
      probe::Hop hop;
      hop.set_service(marker);
      auto ctx = tern::Context::with_timeout(5s);
      REQUIRE(tern::publish(ctx, hop).ok());
    }
  });
}

}  // namespace

TEST_CASE("an event reaches each subscribing service once and instances of one service split the load") {
  const std::string a = unique("suba"), b = unique("subb"), marker = unique("marker");
  std::atomic<int> a1{0}, a2{0}, bn{0};
  auto counter = [&marker](std::atomic<int>& n) {
    return [&n, marker](tern::Context&, const probe::Hop& hop) {
      if (hop.service() == marker) ++n;
      return tern::ok();
    };
  };
  tern::Service sa1(a), sa2(a), sb(b);
  sa1.subscribe<probe::Hop>("probe.hop", counter(a1));
  sa2.subscribe<probe::Hop>("probe.hop", counter(a2));
  sb.subscribe<probe::Hop>("probe.hop", counter(bn));
  sa1.start(options());
  sa2.start(options());
  sb.start(options());
  publish_hops(marker, 40);
  REQUIRE(await_count(bn, 40, 10s));
  auto until = Clock::now() + 10s;
  while (a1 + a2 < 40 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  INFO("a1 " << a1 << ", a2 " << a2 << ", b " << bn);
  CHECK(a1 + a2 == 40);
  CHECK(a1 > 0);
  CHECK(a2 > 0);
  std::this_thread::sleep_for(200ms);  // nothing more arrives: once each
  CHECK(a1 + a2 == 40);
  CHECK(bn == 40);
}

TEST_CASE("a handler that fails twice then succeeds handles the event on the third attempt") {
  const std::string svc_name = unique("flaky"), marker = unique("marker");
  std::atomic<int> tries{0}, handled_at{0};
  tern::Service svc(svc_name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context& ctx, const probe::Hop& hop) {
    if (hop.service() != marker) return tern::ok();
    ++tries;
    if (ctx.attempt() < 3) return tern::Error{tern::Code::kUnavailable, "not yet"};
    handled_at = static_cast<int>(ctx.attempt());
    return tern::ok();
  });
  svc.start(options());
  publish_hops(marker, 1);
  REQUIRE(await_count(handled_at, 3, 10s));
  CHECK(tries == 3);
}

TEST_CASE("an always-failing handler lands the event in the dead-letter queue with its error") {
  const std::string svc_name = unique("failing"), marker = unique("marker");
  std::atomic<int> tries{0};
  tern::Service svc(svc_name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() != marker) return tern::ok();
    ++tries;
    return tern::Error{tern::Code::kInternal, "the ledger is closed"};
  });
  tern::Options o = options();
  o.event_attempts = 3;
  svc.start(o);
  publish_hops(marker, 1);
  Inspector broker;
  std::map<std::string, std::string> headers;
  auto dead = broker.await(svc_name + ".on.probe.hop.dead-letter", 10s, &headers);
  REQUIRE(dead.has_value());
  CHECK(tries == 3);
  CHECK(headers["x-tern-error"] == "INTERNAL: the ledger is closed");
  tern::v1::Event event;
  REQUIRE(event.ParseFromString(*dead));
  probe::Hop hop;
  REQUIRE(hop.ParseFromString(event.body()));
  CHECK(hop.service() == marker);
}

TEST_CASE("instances configured with different retry delays both start and an event still retries to its dead letter") {
  const std::string svc_name = unique("delays"), marker = unique("marker");
  std::atomic<int> tries{0};
  auto failing = [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() != marker) return tern::ok();
    ++tries;
    return tern::Error{tern::Code::kInternal, "no"};
  };
  tern::Service a(svc_name), b(svc_name);
  a.subscribe<probe::Hop>("probe.hop", failing);
  b.subscribe<probe::Hop>("probe.hop", failing);
  tern::Options o = options();
  o.event_attempts = 2;
  o.event_retry_ms = 200;
  a.start(o);
  o.event_retry_ms = 300;   // a retry queue's TTL cannot change: this one needs its own
  REQUIRE_NOTHROW(b.start(o));
  publish_hops(marker, 1);
  Inspector broker;
  REQUIRE(broker.await(svc_name + ".on.probe.hop.dead-letter", 10s).has_value());
  CHECK(tries == 2);
}

TEST_CASE("once_per_event runs a handler once for an event delivered twice") {
  const std::string svc_name = unique("once"), marker = unique("marker");
  std::atomic<int> runs{0}, seen{0};
  auto store = std::make_shared<tern::MemoryIdempotencyStore>();
  tern::Service svc(svc_name);
  // The outer handler sees every delivery; the inner one runs once per id.
  auto inner = tern::once_per_event<probe::Hop>(store, [&](tern::Context&, const probe::Hop&) {
    ++runs;
    return tern::ok();
  });
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context& ctx, const probe::Hop& hop) {
    if (hop.service() != marker) return tern::ok();
    ++seen;
    return inner(ctx, hop);
  });
  svc.start(options());
  // The same envelope twice, as a redelivery or a replay would bring it.
  tern::v1::Event event;
  event.set_id(tern::new_trace_id());
  event.set_type("probe.Hop");
  probe::Hop hop;
  hop.set_service(marker);
  event.set_body(hop.SerializeAsString());
  Inspector broker;
  broker.publish(svc_name + ".on.probe.hop", event.SerializeAsString());
  broker.publish(svc_name + ".on.probe.hop", event.SerializeAsString());
  REQUIRE(await_count(seen, 2, 10s));
  CHECK(runs.load() == 1);
}

namespace {
// Runs the tern CLI and returns what it printed on stdout.
std::string tern_cli(const std::string& args) {
  std::string cmd = std::string(TERN_CLI) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p != nullptr && fgets(buf, sizeof buf, p) != nullptr) out += buf;
  if (p != nullptr) pclose(p);
  return out;
}
}  // namespace

TEST_CASE("tern dlq list shows a dead-lettered event and tern dlq replay brings it back") {
  const std::string svc_name = unique("replay"), marker = unique("marker");
  const std::string subscription = svc_name + ".on.probe.hop";
  std::atomic<bool> broken{true};
  std::atomic<int> tries{0}, handled{0};
  tern::Service svc(svc_name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() != marker) return tern::ok();
    ++tries;
    if (broken) return tern::Error{tern::Code::kFailedPrecondition, "the ledger is closed"};
    ++handled;
    return tern::ok();
  });
  tern::Options o = options();
  o.event_attempts = 2;
  svc.start(o);
  publish_hops(marker, 1);
  REQUIRE(await_count(tries, 2, 10s));
  std::string listed;
  auto until = Clock::now() + 10s;
  while (listed.find("dead_letter_error") == std::string::npos && Clock::now() < until) {
    listed = tern_cli("dlq list " + subscription);
    std::this_thread::sleep_for(50ms);
  }
  CHECK_THAT(listed, Catch::Contains("FAILED_PRECONDITION: the ledger is closed"));
  CHECK_THAT(listed, Catch::Contains("\"type\":\"probe.Hop\""));
  CHECK(tern_cli("dlq list " + subscription) == listed);  // listing removed nothing
  broken = false;
  CHECK_THAT(tern_cli("dlq replay " + subscription), Catch::Contains("replayed 1 event(s)"));
  REQUIRE(await_count(handled, 1, 10s));
  CHECK(tern_cli("dlq list " + subscription).empty());
}

TEST_CASE("tern tail prints published events as JSON lines") {
  const std::string marker = unique("marker");
  std::string out;
  std::atomic<bool> finished{false};
  std::thread tail([&] {
    out = tern_cli("tail 'probe.#' -n 1 --duration 10s");
    finished = true;
  });
  // Publish until the tail, which binds its queue once it has started, has
  // printed one (bounded: 50 x 100 ms).
  for (int i = 0; i < 50 && !finished; ++i) {
    publish_hops(marker, 1);
    std::this_thread::sleep_for(100ms);
  }
  tail.join();
  CHECK_THAT(out, Catch::Contains("\"type\":\"probe.Hop\""));
  CHECK_THAT(out, Catch::Contains("\"source\":\"tern.client\""));
}

TEST_CASE("a subscription can use a quorum queue") {
  const std::string svc_name = unique("quorum"), marker = unique("marker");
  std::atomic<int> handled{0};
  tern::Service svc(svc_name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() == marker) ++handled;
    return tern::ok();
  });
  tern::Options o = options();
  o.event_queue_type = "quorum";
  svc.start(o);
  publish_hops(marker, 5);
  CHECK(await_count(handled, 5, 10s));
}
