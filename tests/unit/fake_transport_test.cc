// A handler's logic tested without a broker: downstream calls are stubbed.
#include <catch2/catch.hpp>

#include "probe.pb.h"
#include "tern/call.h"
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
