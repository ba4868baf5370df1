// RPC over a real RabbitMQ node (TERN_AMQP_URL; scripts/test starts one).
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <map>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using probe::ProbeRequest;
using probe::ProbeResponse;

namespace {

std::chrono::milliseconds since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t);
}

// probe: optionally sleeps or throws, then calls the next service on its
// route, and reports what its context held, outermost hop first.
tern::Result<ProbeResponse> Probe(const std::string& self, const std::string& instance,
                                  tern::Context& ctx, const ProbeRequest& req) {
  if (req.fail()) throw std::runtime_error("probe was asked to fail");
  if (req.sleep_ms() > 0) boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
  ProbeResponse out;
  out.set_instance(instance);
  out.set_payload(req.payload());
  probe::Hop* hop = out.add_hops();
  hop->set_service(self);
  hop->set_trace_id(ctx.trace_id());
  hop->set_span_id(ctx.span_id());
  hop->set_parent_span_id(ctx.parent_span_id());
  hop->set_deadline_unix_ms(ctx.deadline_unix_ms());
  hop->set_caller(ctx.declared_caller());
  for (const auto& [k, v] : ctx.metadata()) (*hop->mutable_metadata())[k] = v;
  if (req.route_size() > 0) {
    ProbeRequest next = req;
    next.mutable_route()->erase(next.mutable_route()->begin());
    // Ask for far more time than is left: the call must still not outlive ctx.
    auto down = tern::call<ProbeResponse>(ctx, req.route(0), "probe", next,
                                          tern::CallOptions{.timeout = 60s});
    if (!down.ok()) return down.error();
    for (const auto& h : down->hops()) *out.add_hops() = h;
  }
  return out;
}

struct ProbeService {
  explicit ProbeService(std::string name, std::string instance = "a", int concurrency = 256)
      : svc(name) {
    svc.handle("probe", [name, instance](tern::Context& ctx, const ProbeRequest& req) {
      return Probe(name, instance, ctx, req);
    });
    tern::Options o = broker_options();
    o.concurrency = concurrency;
    svc.start(o);
  }
  tern::Service svc;
};

tern::Result<ProbeResponse> call_probe(tern::Client& client, const std::string& service,
                                       ProbeRequest req, std::chrono::milliseconds timeout) {
  auto ctx = tern::Context::with_timeout(timeout);
  return client.call<ProbeResponse>(ctx, service, "probe", req);
}

}  // namespace

TEST_CASE("a call round-trips through the broker") {
  const std::string name = unique_service("roundtrip");
  ProbeService s(name, "only");
  tern::Client client(broker_options());
  auto r = call_probe(client, name, ProbeRequest{}, 5s);
  REQUIRE(r.ok());
  CHECK(r->instance() == "only");
  REQUIRE(r->hops_size() == 1);
  CHECK(r->hops(0).service() == name);
  CHECK(r->hops(0).caller() == "tern.client");
}

TEST_CASE("1000 concurrent calls to a 50 ms handler take a small multiple of 50 ms") {
  const std::string name = unique_service("fanout");
  ProbeService s(name, "a", /*concurrency=*/1000);
  tern::Client client(broker_options());
  constexpr int kCalls = 1000;
  std::atomic<int> ok{0};
  auto start = Clock::now();
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    fibers.reserve(kCalls);
    for (int i = 0; i < kCalls; ++i) {
      fibers.emplace_back([&] {
        ProbeRequest req;
        req.set_sleep_ms(50);
        auto ctx = tern::Context::with_timeout(20s);
        auto r = tern::call<ProbeResponse>(ctx, name, "probe", req, {.timeout = 20s});
        if (r.ok()) ok.fetch_add(1);
      });
    }
    for (auto& f : fibers) f.join();
  });
  auto took = since(start);
  INFO("1000 calls took " << took.count() << " ms");
  CHECK(ok.load() == kCalls);
  CHECK(took < 2500ms);  // sequentially it would be 50 s
}

TEST_CASE("DEADLINE_EXCEEDED arrives by the deadline + 100 ms and the late reply is dropped and counted") {
  const std::string name = unique_service("slow");
  ProbeService s(name);
  tern::Client client(broker_options());
  ProbeRequest req;
  req.set_sleep_ms(600);
  auto start = Clock::now();
  auto r = call_probe(client, name, req, 200ms);
  auto took = since(start);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kDeadlineExceeded);
  CHECK_FALSE(r.error().retryable);
  CHECK(took >= 200ms);
  CHECK(took < 300ms);
  // The handler still answers at ~600 ms; that reply must be dropped.
  auto give_up = Clock::now() + 10s;
  while (client.late_replies() == 0 && Clock::now() < give_up) std::this_thread::sleep_for(5ms);
  CHECK(client.late_replies() == 1);
}

TEST_CASE("the deadline of the caller bounds the call even when the call timeout is longer") {
  const std::string name = unique_service("bounded");
  ProbeService s(name);
  tern::Client client(broker_options());
  ProbeRequest req;
  req.set_sleep_ms(1000);
  auto ctx = tern::Context::with_timeout(150ms);
  auto start = Clock::now();
  auto r = client.call<ProbeResponse>(ctx, name, "probe", req, {.timeout = 30s});
  CHECK(r.code() == tern::Code::kDeadlineExceeded);
  CHECK(since(start) < 250ms);
}

TEST_CASE("two instances of a service share its queue") {
  const std::string name = unique_service("shared");
  ProbeService a(name, "a");
  ProbeService b(name, "b");
  tern::Client client(broker_options());
  std::map<std::string, int> served;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int i = 0; i < 100; ++i) {
      fibers.emplace_back([&] {
        ProbeRequest req;
        req.set_sleep_ms(5);
        auto ctx = tern::Context::with_timeout(10s);
        auto r = tern::call<ProbeResponse>(ctx, name, "probe", req);
        served[r.ok() ? r->instance() : std::string(tern::code_name(r.code()))]++;
      });
    }
    for (auto& f : fibers) f.join();
  });
  INFO("a served " << served["a"] << ", b served " << served["b"]);
  CHECK(served["a"] + served["b"] == 100);
  CHECK(served["a"] >= 10);
  CHECK(served["b"] >= 10);
}

TEST_CASE("an unknown service fails with UNAVAILABLE well before the deadline") {
  tern::Client client(broker_options());
  auto start = Clock::now();
  auto r = call_probe(client, unique_service("nobody"), ProbeRequest{}, 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kUnavailable);
  CHECK(r.error().retryable);
  CHECK(since(start) < 1s);
}

TEST_CASE("a malformed body gets INVALID_ARGUMENT and the service keeps answering") {
  const std::string name = unique_service("garbage");
  ProbeService s(name);
  tern::Client client(broker_options());
  auto bad = client.run([&] {
    auto ctx = tern::Context::with_timeout(5s);
    return tern::call_bytes(ctx, name, "probe", std::string("\xff\xff\xff\xff", 4));
  });
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.code() == tern::Code::kInvalidArgument);
  CHECK_THAT(bad.error().message, Catch::Contains("probe.ProbeRequest"));
  // ...and the message is kept in the dead-letter queue with the reason.
  Inspector broker;
  std::map<std::string, std::string> headers;
  auto dead = broker.await(name + ".dead-letter", 5s, &headers);
  REQUIRE(dead.has_value());
  CHECK(headers["x-tern-reason"] == "request body is not a valid probe.ProbeRequest");
  CHECK(call_probe(client, name, ProbeRequest{}, 5s).ok());
}

TEST_CASE("an unknown endpoint gets UNIMPLEMENTED") {
  const std::string name = unique_service("endpoints");
  ProbeService s(name);
  tern::Client client(broker_options());
  auto ctx = tern::Context::with_timeout(5s);
  auto r = client.call<ProbeResponse>(ctx, name, "nope", ProbeRequest{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kUnimplemented);
  CHECK(r.error().params.at("endpoint") == "nope");
}

TEST_CASE("a handler that throws gets INTERNAL and the service keeps serving") {
  const std::string name = unique_service("throws");
  ProbeService s(name);
  tern::Client client(broker_options());
  ProbeRequest req;
  req.set_fail(true);
  auto r = call_probe(client, name, req, 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kInternal);
  CHECK_THAT(r.error().message, Catch::Contains("probe was asked to fail"));
  CHECK(call_probe(client, name, ProbeRequest{}, 5s).ok());
}

TEST_CASE("the deadline and trace and metadata propagate across two hops") {
  const std::string front = unique_service("front");
  const std::string back = unique_service("back");
  ProbeService f(front);
  ProbeService b(back);
  tern::Client client(broker_options());
  auto ctx = tern::Context::with_timeout(1500ms);
  ctx.set_metadata("user", "ada");
  ProbeRequest req;
  req.add_route(back);
  auto r = client.call<ProbeResponse>(ctx, front, "probe", req, {.timeout = 60s});
  REQUIRE(r.ok());
  REQUIRE(r->hops_size() == 2);
  const auto& h1 = r->hops(0);
  const auto& h2 = r->hops(1);
  CHECK(h1.service() == front);
  CHECK(h2.service() == back);
  CHECK(h1.trace_id() == ctx.trace_id());
  CHECK(h2.trace_id() == ctx.trace_id());
  // Each hop is a span of its own under the caller's attempt span
  // (tracing_test.cc follows the whole chain of spans).
  CHECK(!h1.parent_span_id().empty());
  CHECK(h1.span_id() != ctx.span_id());
  CHECK(h2.span_id() != h1.span_id());
  CHECK(h2.parent_span_id() != h1.parent_span_id());
  CHECK(h2.caller() == front);
  CHECK(h2.metadata().at("user") == "ada");
  // Each hop's deadline is the caller's (to the ms), never later, although
  // every hop asked for a 60 s timeout.
  CHECK(h1.deadline_unix_ms() <= ctx.deadline_unix_ms() + 1);
  CHECK(h2.deadline_unix_ms() <= h1.deadline_unix_ms() + 1);
  CHECK(h2.deadline_unix_ms() >= ctx.deadline_unix_ms() - 20);
}

TEST_CASE("a request already past its deadline is not run") {
  const std::string name = unique_service("expired");
  std::atomic<int> runs_of_late{0};
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context&, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    if (req.route_size() > 0 && req.route(0) == "late") runs_of_late++;
    if (req.sleep_ms() > 0) boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
    return ProbeResponse{};
  });
  tern::Options o = broker_options();
  o.concurrency = 1;  // one request at a time: the second waits in the queue
  svc.start(o);
  tern::Client client(broker_options());
  client.run([&] {
    boost::fibers::fiber blocker([&] {
      ProbeRequest req;
      req.set_sleep_ms(400);
      auto ctx = tern::Context::with_timeout(5s);
      CHECK(tern::call<ProbeResponse>(ctx, name, "probe", req).ok());
    });
    boost::this_fiber::yield();  // let the blocker publish first
    ProbeRequest late;
    late.add_route("late");
    auto ctx = tern::Context::with_timeout(100ms);
    CHECK(tern::call<ProbeResponse>(ctx, name, "probe", late).code() ==
          tern::Code::kDeadlineExceeded);
    blocker.join();
    // Whatever was queued behind the blocker has been dealt with by now.
    auto ctx2 = tern::Context::with_timeout(5s);
    CHECK(tern::call<ProbeResponse>(ctx2, name, "probe", ProbeRequest{}).ok());
  });
  CHECK(runs_of_late.load() == 0);
}

TEST_CASE("stop() lets in-flight requests finish and reply") {
  const std::string name = unique_service("drain");
  auto s = std::make_unique<ProbeService>(name);
  tern::Client client(broker_options());
  std::thread stopper([&] {
    auto give_up = Clock::now() + 10s;
    while (s->svc.in_flight() == 0 && Clock::now() < give_up) std::this_thread::sleep_for(1ms);
    s->svc.stop();
  });
  ProbeRequest req;
  req.set_sleep_ms(300);
  auto r = call_probe(client, name, req, 5s);
  stopper.join();
  CHECK(r.ok());
  CHECK(s->svc.in_flight() == 0);
}

TEST_CASE("heartbeats keep flowing while a busy handler keeps its thread running for seconds") {
  const std::string name = unique_service("heartbeat");
  tern::Options o = broker_options();
  o.heartbeat_s = 1;  // the broker drops a connection silent for ~2 heartbeats
  tern::Service svc(name);
  // Cooperative but busy: the thread never idles for 3.5 s, so the socket is
  // only looked at because the scheduler makes room for it.
  svc.handle("probe", [](tern::Context&, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    if (req.sleep_ms() == 0) return ProbeResponse{};
    boost::this_fiber::sleep_for(10ms);  // the loop goes idle: its IO fiber parks
    auto until = Clock::now() + std::chrono::milliseconds(req.sleep_ms());
    while (Clock::now() < until) boost::this_fiber::yield();
    return ProbeResponse{};
  });
  svc.start(o);
  tern::Client client(o);
  auto ctx = tern::Context::with_timeout(10s);
  ProbeRequest busy;
  busy.set_sleep_ms(3500);
  auto r = client.call<ProbeResponse>(ctx, name, "probe", busy, {.timeout = 10s});
  INFO((r.ok() ? "ok" : r.error().to_string()));
  CHECK(r.ok());
  auto again = call_probe(client, name, ProbeRequest{}, 5s);
  INFO((again.ok() ? "ok" : again.error().to_string()));
  CHECK(again.ok());
}

TEST_CASE("a 1 MiB request and its reply cross many AMQP frames intact") {
  const std::string name = unique_service("large");
  ProbeService s(name);
  tern::Client client(broker_options());
  ProbeRequest req;
  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + (i >> 11));
  req.set_payload(payload);
  auto r = call_probe(client, name, req, 5s);
  REQUIRE(r.ok());
  CHECK(r->payload().size() == payload.size());
  CHECK(r->payload() == payload);
}

TEST_CASE("replies racing the caller's deadline end every call with a reply or DEADLINE_EXCEEDED") {
  const std::string name = unique_service("race");
  tern::Service svc(name);
  // Answers exactly when the caller gives up.
  svc.handle("probe", [](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    boost::this_fiber::sleep_for(ctx.remaining());
    return ProbeResponse{};
  });
  tern::Options o = broker_options();
  svc.start(o);
  tern::Client client(o);
  int ok = 0, late = 0, other = 0;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int f = 0; f < 20; ++f) {
      fibers.emplace_back([&, f] {
        for (int i = 0; i < 25; ++i) {
          auto ctx = tern::Context::with_timeout(std::chrono::milliseconds(15 + (f + i) % 10));
          auto r = tern::call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
          if (r.ok()) ++ok;
          // So many timeouts may open the circuit: then calls fail fast.
          else if (r.code() == tern::Code::kDeadlineExceeded ||
                   (r.code() == tern::Code::kUnavailable && r.error().params.count("circuit")))
            ++late;
          else ++other;
        }
      });
    }
    for (auto& f : fibers) f.join();
  });
  INFO(ok << " ok, " << late << " deadline exceeded or circuit open, " << other << " other");
  CHECK(ok + late == 500);
  CHECK(other == 0);
}

TEST_CASE("a request over the message size limit is refused before it is sent") {
  const std::string name = unique_service("toolarge");
  ProbeService s(name);
  tern::Options o = broker_options();
  o.max_message_kb = 64;
  tern::Client client(o);
  ProbeRequest req;
  req.set_payload(std::string(100 * 1024, 'x'));
  auto start = Clock::now();
  auto r = call_probe(client, name, req, 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kInvalidArgument);
  CHECK(r.error().params.at("limit_bytes") == std::to_string(64 * 1024));
  CHECK(since(start) < 1s);
}

TEST_CASE("a service refuses a request over its size limit and keeps serving") {
  const std::string name = unique_service("limit");
  tern::Service svc(name);
  svc.handle("probe", [](tern::Context& ctx, const ProbeRequest& req) { return Probe("l", "a", ctx, req); });
  tern::Options small = broker_options();
  small.max_message_kb = 64;
  svc.start(small);
  tern::Client client(broker_options());  // the default limit: 4 MiB
  ProbeRequest req;
  req.set_payload(std::string(100 * 1024, 'x'));
  auto r = call_probe(client, name, req, 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kInvalidArgument);
  CHECK_THAT(r.error().message, Catch::Contains("limit"));
  CHECK(call_probe(client, name, ProbeRequest{}, 5s).ok());
}

TEST_CASE("messages that are not requests go to the dead-letter queue with their reason") {
  const std::string name = unique_service("poison");
  ProbeService s(name);
  Inspector broker;
  tern::Client client(broker_options());
  // Garbage with somewhere to answer: the sender hears INVALID_ARGUMENT (the
  // pika test checks that); here, no reply queue at all, and a body that is
  // a valid envelope but has no reply_to.
  broker.publish(name, "\xff\x01 definitely not protobuf", "amq.gen-nowhere");
  std::map<std::string, std::string> headers;
  auto dead = broker.await(name + ".dead-letter", 5s, &headers);
  REQUIRE(dead.has_value());
  CHECK(*dead == "\xff\x01 definitely not protobuf");
  CHECK(headers["x-tern-reason"] == "message body is not a tern.v1.Request envelope");
  CHECK(headers["x-tern-queue"] == name);

  broker.publish(name, "", /*reply_to=*/"");
  headers.clear();
  dead = broker.await(name + ".dead-letter", 5s, &headers);
  REQUIRE(dead.has_value());
  CHECK(headers["x-tern-reason"] == "no reply_to: nobody to answer");

  // Each went once, and the service still answers.
  CHECK_FALSE(broker.get(name + ".dead-letter").has_value());
  CHECK(call_probe(client, name, ProbeRequest{}, 5s).ok());
}
