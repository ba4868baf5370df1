// A handler's logic tested without a broker: downstream calls are stubbed,
// published events recorded.
#include <catch2/catch.hpp>

#include "probe.pb.h"
#include "tern/call.h"
#include "tern/events.h"
#include "tern/testing.h"

using namespace std::chrono_literals;

namespace {
// Asks service.user for a hop and reports how many it saw.
tern::Result<probe::ProbeResponse> CountHops(tern::Context& ctx, const probe::ProbeRequest& req) {
  auto down = tern::call<probe::ProbeResponse>(ctx, "service.user", "probe", req,
                                               tern::CallOptions{.timeout = 50ms});
  if (!down.ok()) return down.error();
  probe::ProbeResponse out = *down;
  out.set_instance("counted");
  return out;
}
}  // namespace

TEST_CASE("a handler's downstream calls go to the stubbed transport") {
  tern::testing::FakeTransport fake;
  fake.stub<probe::ProbeRequest, probe::ProbeResponse>(
      "service.user", "probe", [](const probe::ProbeRequest& r) -> tern::Result<probe::ProbeResponse> {
        probe::ProbeResponse resp;
        for (const auto& s : r.route()) resp.add_hops()->set_service(s);
        return resp;
      });
  auto ctx = fake.context(1s);
  probe::ProbeRequest req;
  req.add_route("a");
  req.add_route("b");
  auto r = CountHops(ctx, req);
  REQUIRE(r.ok());
  CHECK(r->hops_size() == 2);
  CHECK(r->instance() == "counted");
  REQUIRE(fake.calls().size() == 1);
  CHECK(fake.calls()[0].trace_id == ctx.trace_id());
  CHECK(fake.calls()[0].deadline <= tern::Context::Clock::now() + 50ms);
}

TEST_CASE("a stub's error reaches the handler as a typed error") {
  tern::testing::FakeTransport fake;
  fake.stub<probe::ProbeRequest, probe::ProbeResponse>(
      "service.user", "probe", [](const probe::ProbeRequest&) -> tern::Result<probe::ProbeResponse> {
        return tern::Error{tern::Code::kNotFound, "no user"};
      });
  auto ctx = fake.context(1s);
  auto r = CountHops(ctx, probe::ProbeRequest{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kNotFound);
}

TEST_CASE("tern::call outside any runtime fails with FAILED_PRECONDITION") {
  auto ctx = tern::Context::with_timeout(1s);
  auto r = tern::call<probe::ProbeResponse>(ctx, "service.user", "probe", probe::ProbeRequest{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kFailedPrecondition);
}

namespace {
// Announces a hop, as a handler that publishes an event does.
tern::Error AnnounceHop(tern::Context& ctx, const std::string& service) {
  probe::Hop hop;
  hop.set_service(service);
  return tern::publish(ctx, hop);
}
}  // namespace

TEST_CASE("publishes are recorded with their type, routing key, body, trace and metadata") {
  tern::testing::FakeTransport fake;
  auto ctx = fake.context(1s);
  ctx.set_metadata("request_id", "r-1");
  REQUIRE(AnnounceHop(ctx, "first").ok());
  REQUIRE(AnnounceHop(ctx, "second").ok());
  REQUIRE(fake.publishes().size() == 2);
  const auto& p = fake.publishes()[0];
  CHECK(p.type == "probe.Hop");
  CHECK(p.routing_key == "probe.hop");
  probe::Hop body;
  REQUIRE(body.ParseFromString(p.body));
  CHECK(body.service() == "first");
  CHECK(p.trace_id == ctx.trace_id());
  CHECK(p.metadata == tern::Context::Metadata{{"request_id", "r-1"}});
  CHECK(fake.calls().empty());
}

TEST_CASE("published<Event>() parses the events of that type, in order, and skips others") {
  tern::testing::FakeTransport fake;
  auto ctx = fake.context(1s);
  REQUIRE(AnnounceHop(ctx, "a").ok());
  probe::ProbeRequest other;
  other.add_route("not a hop");
  REQUIRE(tern::publish(ctx, other).ok());
  REQUIRE(AnnounceHop(ctx, "b").ok());
  auto hops = fake.published<probe::Hop>();
  REQUIRE(hops.size() == 2);
  CHECK(hops[0].service() == "a");
  CHECK(hops[1].service() == "b");
  auto requests = fake.published<probe::ProbeRequest>();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].route(0) == "not a hop");
  CHECK(fake.published<probe::ProbeResponse>().empty());
}

TEST_CASE("fail_publishes makes publishes fail with its error, recording nothing, until tern::ok()") {
  tern::testing::FakeTransport fake;
  auto ctx = fake.context(1s);
  fake.fail_publishes(
      tern::Error{tern::Code::kUnavailable, "broker away"}.with_param("outcome", "unknown"));
  tern::Error e = AnnounceHop(ctx, "lost");
  CHECK(e.code == tern::Code::kUnavailable);
  CHECK(e.params.at("outcome") == "unknown");
  CHECK(fake.publishes().empty());
  fake.fail_publishes(tern::ok());
  CHECK(AnnounceHop(ctx, "kept").ok());
  REQUIRE(fake.published<probe::Hop>().size() == 1);
  CHECK(fake.published<probe::Hop>()[0].service() == "kept");
}
