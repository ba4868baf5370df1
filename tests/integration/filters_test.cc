// Filters on both sides and local failure state, over a real broker.
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <vector>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;

TEST_CASE("a server filter runs after the platform's checks and may refuse a request") {
  const std::string name = unique_service("filtered");
  std::atomic<int> filtered{0}, handled{0};
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    handled.fetch_add(1);
    return ProbeResponse{};
  });
  svc.use([&](tern::Context& ctx, const tern::IncomingRequest& req, const tern::ServerNext& next)
              -> tern::Result<std::string> {
    filtered.fetch_add(1);
    CHECK(req.service == name);
    if (ctx.metadata().count("token") == 0) return tern::Error{tern::Code::kUnauthenticated, "no token"};
    return next(ctx, req);
  });
  svc.start(broker_options());
  tern::Client client(broker_options());

  auto ctx = tern::Context::with_timeout(5s);
  auto refused = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  CHECK(refused.code() == tern::Code::kUnauthenticated);
  CHECK(handled.load() == 0);

  ctx.set_metadata("token", "t");
  auto ok = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  CHECK(ok.ok());
  CHECK(handled.load() == 1);
  CHECK(filtered.load() == 2);

  // The platform's own step answers an unknown endpoint before user filters.
  auto unknown = client.call<ProbeResponse>(ctx, name, "nope", ProbeRequest{});
  CHECK(unknown.code() == tern::Code::kUnimplemented);
  CHECK(filtered.load() == 2);
}

TEST_CASE("a client filter wraps each attempt: a fault it injects is retried by the platform") {
  const std::string name = unique_service("flaky");
  std::atomic<int> handled{0};
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    handled.fetch_add(1);
    return ProbeResponse{};
  });
  svc.start(broker_options());
  std::mutex mu;
  std::vector<uint32_t> attempts;
  tern::ClientFilter fail_first = [&](const tern::Context& ctx, tern::OutgoingCall& call,
                                      const tern::ClientNext& next) -> tern::Result<std::string> {
    {
      std::lock_guard<std::mutex> lock(mu);
      attempts.push_back(call.attempt);
    }
    if (call.attempt == 1) return tern::Error{tern::Code::kUnavailable, "injected"};
    return next(ctx, call);
  };
  tern::Client client(broker_options(), "tern.client", {fail_first});
  auto ctx = tern::Context::with_timeout(5s);
  auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  CHECK(r.ok());
  CHECK(handled.load() == 1);   // the injected failure never reached the service
  CHECK(attempts == std::vector<uint32_t>{1, 2});
}

TEST_CASE("a downstream's INVALID_ARGUMENT with body=invalid does not dead-letter the upstream request") {
  const std::string up = unique_service("upstream");
  const std::string down = unique_service("downstream");
  tern::Service downstream(down);
  downstream.handle("probe", [](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    return ProbeResponse{};
  });
  downstream.start(broker_options());
  tern::Service upstream(up);
  // Sends the downstream a body that is not a ProbeRequest, and returns its
  // error as handlers usually do: as is.
  upstream.handle("probe", [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    auto r = tern::call_bytes(ctx, down, "probe", std::string("\xff\xff\xff\xff", 4));
    if (!r.ok()) return r.error();
    return ProbeResponse{};
  });
  upstream.start(broker_options());
  tern::Client client(broker_options());
  auto ctx = tern::Context::with_timeout(5s);
  auto r = client.call<ProbeResponse>(ctx, up, "probe", ProbeRequest{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kInvalidArgument);
  CHECK(r.error().params.at("body") == "invalid");   // the caller still reads the params
  Inspector broker;
  // The premise: the downstream really got a bad body and dead-lettered it...
  std::map<std::string, std::string> headers;
  REQUIRE(broker.await(down + ".dead-letter", 5s, &headers).has_value());
  CHECK(headers["x-tern-reason"] == "request body is not a valid probe.ProbeRequest");
  // ...while the upstream's own, well-formed request was answered, not kept.
  CHECK_FALSE(broker.await(up + ".dead-letter", 1s).has_value());
}
