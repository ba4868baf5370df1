// Service::stop() past its drain timeout, over a real broker.
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

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
}  // namespace

TEST_CASE("stop() is bounded by the drain timeout: late handlers are cancelled, stuck ones left behind") {
  const std::string name = unique_service("stuck");
  std::atomic<int> started{0};
  std::atomic<bool> saw_cancel{false};
  auto svc = std::make_unique<tern::Service>(name);
  svc->handle("probe", [&](tern::Context& ctx, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    started.fetch_add(1);
    const auto until = Clock::now() + std::chrono::milliseconds(req.sleep_ms());
    if (req.fail()) {   // ignores its context: stuck for sleep_ms
      boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
      return ProbeResponse{};
    }
    while (Clock::now() < until && !ctx.cancelled()) boost::this_fiber::sleep_for(5ms);
    if (ctx.cancelled()) saw_cancel = true;
    return tern::Error{tern::Code::kCancelled, "cancelled by the drain"};
  });
  tern::Options o = broker_options();
  o.drain_timeout_ms = 300;
  svc->start(o);
  tern::Client client(broker_options());
  std::vector<std::thread> callers;
  for (bool stuck : {false, true})
    callers.emplace_back([&, stuck] {
      ProbeRequest req;
      req.set_sleep_ms(20000);
      req.set_fail(stuck);
      auto ctx = tern::Context::with_timeout(2s);
      (void)client.call<ProbeResponse>(ctx, name, "probe", req, {.timeout = 2s, .max_attempts = 1});
    });
  const auto give_up = Clock::now() + 10s;
  while (started.load() < 2 && Clock::now() < give_up) std::this_thread::sleep_for(1ms);
  REQUIRE(started.load() == 2);
  const auto stop_at = Clock::now();
  svc->stop();
  const auto took = since(stop_at);
  INFO("stop() took " << took.count() << " ms");
  // 300 ms of drain, then up to 2 s for the cancelled handlers: not 20 s.
  CHECK(took < 6s);
  CHECK(saw_cancel.load());   // the cooperative handler saw its context cancelled
  svc.reset();   // safe: the stuck handler keeps what it uses
  for (auto& c : callers) c.join();
}
