// tern's own heartbeats, seen from outside: a loopback proxy between a
// client and the broker (proxy.h) counts the heartbeat frames the client
// writes and checks that every frame it writes is whole, and freezes the
// link (no FIN, no RST) to see how soon the client notices.
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "proxy.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;
using Clock = std::chrono::steady_clock;

namespace {

int broker_port() {
  const std::string url = broker_options().amqp_url;
  const size_t colon = url.rfind(':');
  return std::stoi(url.substr(colon + 1));
}

// A client with a 1 s heartbeat whose connections go through `proxy`.
tern::Options through(const FrameProxy& proxy) {
  tern::Options o = broker_options();
  o.amqp_url = broker_url_at(proxy.port());
  o.heartbeat_s = 1;
  return o;
}

// A service on the broker directly: `probe` sleeps sleep_ms (or until
// cancelled) and answers with the payload's size.
struct Sleeper {
  explicit Sleeper(const std::string& name) : svc(name) {
    svc.handle("probe", [this](tern::Context& ctx, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
      started.fetch_add(1);
      const auto until = Clock::now() + std::chrono::milliseconds(req.sleep_ms());
      while (Clock::now() < until && !ctx.cancelled()) boost::this_fiber::sleep_for(10ms);
      ProbeResponse r;
      r.set_instance(std::to_string(req.payload().size()));
      return r;
    });
    tern::Options o = broker_options();
    o.drain_timeout_ms = 200;   // a sleeper still running at the end is cancelled then
    svc.start(o);
  }
  tern::Service svc;
  std::atomic<int> started{0};
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

TEST_CASE("an idle client writes a heartbeat every half interval, and none inside the large frames it streams") {
  FrameProxy proxy(broker_port());
  const std::string name = unique_service("hb.write");
  Sleeper s(name);
  tern::Client client(through(proxy));
  auto ctx = tern::Context::with_timeout(5s);
  REQUIRE(client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).ok());

  // Idle for 4 s: tern writes one when nothing went out for 0.5 s;
  // rabbitmq-c's own would write one a second. The median gap between them
  // tells which (a busy machine delays some, not most).
  const size_t before = proxy.client_heartbeats().size();
  std::this_thread::sleep_for(4s);   // the interval under test, not a synchronisation
  const auto beats = proxy.client_heartbeats();
  std::vector<double> gaps;
  for (size_t i = before + 1; i < beats.size(); ++i) gaps.push_back(seconds(beats[i] - beats[i - 1]));
  std::sort(gaps.begin(), gaps.end());
  const size_t idle_beats = beats.size() - before;
  const double median = gaps.empty() ? 1e9 : gaps[gaps.size() / 2];
  INFO(idle_beats << " heartbeat frames from the idle client in 4 s, median gap " << median << " s");
  REQUIRE(gaps.size() >= 4);
  CHECK(median >= 0.4);
  CHECK(median <= 0.75);

  // 4 s of 1 MiB requests from 4 fibers: frames far larger than a socket
  // write, and heartbeats due in between, when output pauses for 0.7 s.
  std::atomic<int> ok{0}, failed{0};
  std::string first_error;
  const auto until = Clock::now() + 4s;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int i = 0; i < 4; ++i)
      fibers.emplace_back([&] {
        ProbeRequest req;
        req.set_payload(std::string(1 << 20, 'x'));
        req.set_sleep_ms(700);   // pauses in the output: heartbeats come due
        while (Clock::now() < until) {
          auto c = tern::Context::with_timeout(5s);
          auto r = tern::call<ProbeResponse>(c, name, "probe", req, {.timeout = 5s, .max_attempts = 1});
          if (r.ok()) ++ok;
          else if (failed++ == 0) first_error = r.error().to_string();
        }
      });
    for (auto& f : fibers) f.join();
  });
  const size_t meanwhile = proxy.client_heartbeats().size() - beats.size();
  INFO(ok.load() << " large calls ok, " << failed.load() << " failed (" << first_error << "); "
                 << proxy.client_frames() << " frames from the client, " << proxy.broken_frames() << " broken, "
                 << meanwhile << " heartbeats among them");
  CHECK(failed.load() == 0);
  CHECK(ok.load() >= 8);
  CHECK(meanwhile >= 1);
  CHECK(proxy.broken_frames() == 0);
}

TEST_CASE("a frozen link is noticed within two heartbeats, with the thread idle or a backlog of output waiting") {
  const bool backlog = GENERATE(false, true);
  FrameProxy proxy(broker_port());
  const std::string name = unique_service("hb.frozen");
  Sleeper s(name);
  tern::Client client(through(proxy));
  {
    auto ctx = tern::Context::with_timeout(5s);
    REQUIRE(client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}).ok());
  }
  // Idle: one call waits on a handler that sleeps 20 s when the link
  // freezes. Backlog: the link freezes first, then 12 fibers each send a
  // 1 MiB request, far more than the sockets between client and proxy hold
  // (and under the 16 MiB an output buffer may hold before publishes fail fast),
  // so output waits to be written all along.
  const int fibers = backlog ? 12 : 1;
  std::vector<tern::Result<ProbeResponse>> results(fibers, tern::Error{});
  std::vector<Clock::time_point> ended_at(fibers);
  Clock::time_point frozen_at{};
  auto freeze = [&] {
    proxy.freeze(true);
    frozen_at = Clock::now();
  };
  if (backlog) freeze();
  std::thread callers([&] {
    client.run([&] {
      std::vector<boost::fibers::fiber> all;
      for (int i = 0; i < fibers; ++i)
        all.emplace_back([&, i] {
          ProbeRequest req;
          req.set_sleep_ms(backlog ? 0 : 20000);
          if (backlog) req.set_payload(std::string(1 << 20, 'y'));
          auto c = tern::Context::with_timeout(15s);
          results[i] = tern::call<ProbeResponse>(c, name, "probe", req, {.timeout = 15s, .max_attempts = 1});
          ended_at[i] = Clock::now();
        });
      for (auto& f : all) f.join();
    });
  });
  if (!backlog) {
    for (auto t = Clock::now() + 10s; s.started.load() < 2 && Clock::now() < t;) std::this_thread::sleep_for(1ms);
    REQUIRE(s.started.load() >= 2);   // the warm-up call's and this one's
    freeze();
  }
  callers.join();
  int lost = 0, other = 0;
  double first = 1e9, last = 0;
  std::string sample;
  for (int i = 0; i < fibers; ++i) {
    const auto& r = results[i];
    const double after = seconds(ended_at[i] - frozen_at);
    if (!r.ok() && r.error().message.find("missed heartbeats") != std::string::npos) {
      ++lost;
      first = std::min(first, after);
      last = std::max(last, after);
      sample = r.error().message;
    } else if (after > 0) {
      ++other;   // answered (or failed otherwise) after the freeze
    }
  }
  INFO((backlog ? "backlog" : "idle") << ": " << lost << " calls failed on missed heartbeats, between " << first
                                      << " and " << last << " s after the freeze; " << other
                                      << " ended otherwise after it; " << sample);
  CHECK(lost >= 1);
  CHECK(first >= 1.0);   // not before one heartbeat of silence...
  CHECK(last <= 3.5);    // ...and within 2 x 1 s, with room for a busy machine
  CHECK(other == 0);

  // Thawed, the client reconnects through the same proxy by itself.
  proxy.freeze(false);
  tern::Result<ProbeResponse> again = tern::Error{};
  for (auto t = Clock::now() + 30s; !again.ok() && Clock::now() < t; std::this_thread::sleep_for(100ms)) {
    auto c = tern::Context::with_timeout(2s);
    again = client.call<ProbeResponse>(c, name, "probe", ProbeRequest{});
  }
  INFO((again.ok() ? "ok" : again.error().to_string()));
  CHECK(again.ok());
}
