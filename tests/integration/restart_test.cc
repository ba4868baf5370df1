// A broker restart under a running service and client. Stops and starts the
// RabbitMQ application of the private node scripts/test started.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/fiber/all.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <atomic>
#include <cstdio>
#include <optional>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

int rabbit_ctl(const std::string& args) {
  if (std::getenv("TERN_RABBIT_NODE") == nullptr || std::getenv("TERN_RABBIT_DIR") == nullptr)
    FAIL("TERN_RABBIT_NODE/TERN_RABBIT_DIR are not set: run through scripts/test");
  std::string cmd = "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && rabbit_ctl " +
                    args + "' >/dev/null 2>&1";
  return std::system(cmd.c_str());
}

// Starts the broker again however the test ends.
struct BrokerStopped {
  BrokerStopped() { REQUIRE(rabbit_ctl("stop_app") == 0); }
  ~BrokerStopped() { rabbit_ctl("start_app"); }
};

}  // namespace

TEST_CASE("a service and a client survive a broker restart without being restarted") {
  const std::string name = "test.restart." + tern::new_span_id();
  std::atomic<bool> release{false};
  tern::Service svc(name);
  // This Service object's own token: a service made again (restarted)
  // would answer with another.
  const std::string token = tern::new_trace_id();
  // A request with sleep_ms holds its handler until the test releases it
  // (bounded by sleep_ms), so it is surely in flight when the broker stops.
  svc.handle("probe", [&](tern::Context&, const probe::ProbeRequest& req) -> tern::Result<probe::ProbeResponse> {
    auto until = Clock::now() + std::chrono::milliseconds(req.sleep_ms());
    while (!release && Clock::now() < until) boost::this_fiber::sleep_for(5ms);
    probe::ProbeResponse r;
    r.set_instance(token);
    return r;
  });
  tern::Options o = tern::Options::from_env();
  o.threads = 1;
  svc.start(o);
  tern::Client client(o);
  // One attempt each: what the lost connection does to a call, unretried.
  auto call = [&](uint32_t sleep_ms, std::chrono::milliseconds timeout) {
    probe::ProbeRequest req;
    req.set_sleep_ms(sleep_ms);
    auto ctx = tern::Context::with_timeout(timeout);
    return client.call<probe::ProbeResponse>(ctx, name, "probe", req,
                                             {.timeout = timeout, .max_attempts = 1});
  };
  auto before = call(0, 5s);
  REQUIRE(before.ok());
  CHECK(before->instance() == token);

  tern::Result<probe::ProbeResponse> in_flight = tern::Error{};
  Clock::time_point stop_at;
  std::thread caller([&] { in_flight = call(15000, 20s); });
  auto give_up = Clock::now() + 10s;
  while (svc.in_flight() == 0 && Clock::now() < give_up) std::this_thread::sleep_for(1ms);
  {
    stop_at = Clock::now();
    BrokerStopped stopped;
    release = true;  // the handler answers now, into a closed connection
    caller.join();
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stop_at);
    INFO("the in-flight call ended after " << waited.count() << " ms: "
                                           << (in_flight.ok() ? "ok" : in_flight.error().to_string()));
    // It fails at once, not at its 20 s deadline, with an error that says
    // the request went out and may have run: not to be retried blindly.
    REQUIRE_FALSE(in_flight.ok());
    CHECK(in_flight.code() == tern::Code::kUnavailable);
    CHECK_FALSE(in_flight.error().retryable);
    CHECK(in_flight.error().params.at("outcome") == "unknown");
    CHECK(waited < 10s);
    // While the broker is down, calls fail fast too.
    auto down = call(0, 5s);
    CHECK(down.code() == tern::Code::kUnavailable);
  }  // the broker starts again

  // Both reconnect by themselves: calls succeed again within a bounded time.
  tern::Result<probe::ProbeResponse> after = tern::Error{};
  auto until = Clock::now() + 60s;
  while (Clock::now() < until) {
    after = call(0, 2s);
    if (after.ok()) break;
    std::this_thread::sleep_for(200ms);
  }
  INFO((after.ok() ? "ok" : after.error().to_string()));
  REQUIRE(after.ok());
  CHECK(after->instance() == token);   // the same Service object, never restarted
}

namespace {
// messages_unacknowledged of `queue`, or -1.
int unacked(const std::string& queue) {
  std::string cmd = "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && rabbit_ctl -q "
                    "list_queues name messages_unacknowledged' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char line[512];
  int n = -1;
  while (fgets(line, sizeof line, p) != nullptr) {
    std::string s(line);
    if (s.rfind(queue + "\t", 0) == 0) n = std::stoi(s.substr(queue.size() + 1));
  }
  pclose(p);
  return n;
}

struct MemoryAlarm {
  MemoryAlarm() { REQUIRE(rabbit_ctl("set_vm_memory_high_watermark 0.0000001") == 0); }
  ~MemoryAlarm() { rabbit_ctl("set_vm_memory_high_watermark 0.4"); }
};
}  // namespace

TEST_CASE("a broker memory alarm blocks publishing but a service's acks still get through") {
  const std::string name = "test.alarm." + tern::new_span_id();
  std::atomic<bool> release{false};
  tern::Service svc(name);
  // Holds the request until the test has raised the alarm (bounded).
  svc.handle("probe", [&](tern::Context&, const probe::ProbeRequest& req) -> tern::Result<probe::ProbeResponse> {
    auto until = Clock::now() + std::chrono::milliseconds(req.sleep_ms());
    while (!release && Clock::now() < until) boost::this_fiber::sleep_for(5ms);
    return probe::ProbeResponse{};
  });
  tern::Options o = tern::Options::from_env();
  o.threads = 1;
  svc.start(o);
  tern::Client client(o);
  tern::Result<probe::ProbeResponse> result = tern::Error{};
  std::atomic<bool> done{false};
  std::thread caller([&] {
    probe::ProbeRequest req;
    req.set_sleep_ms(15000);
    auto ctx = tern::Context::with_timeout(20s);
    result = client.call<probe::ProbeResponse>(ctx, name, "probe", req, {.timeout = 20s});
    done = true;
  });
  auto give_up = Clock::now() + 10s;
  while (svc.in_flight() == 0 && Clock::now() < give_up) std::this_thread::sleep_for(1ms);
  REQUIRE(svc.in_flight() == 1);
  {
    MemoryAlarm alarm;
    release = true;
    // The handler finishes; its reply is held by the blocked publishing
    // connection, but the ack on the consuming connection reaches the queue.
    int n = -1;
    auto until = Clock::now() + 10s;
    while (Clock::now() < until && (n = unacked(name)) != 0) std::this_thread::sleep_for(100ms);
    CHECK(n == 0);
    CHECK_FALSE(done.load());  // the reply really was held back
  }
  caller.join();
  INFO((result.ok() ? "ok" : result.error().to_string()));
  CHECK(result.ok());  // and arrives once the alarm clears
}

TEST_CASE("confirmed events survive a broker restart between publish and consume") {
  const std::string name = "test.durable." + tern::new_span_id();
  const std::string marker = tern::new_trace_id();
  std::atomic<int> handled{0};
  tern::Options o = tern::Options::from_env();
  o.threads = 1;
  {
    // Create the subscription queue, then go away: nobody consumes.
    tern::Service first(name);
    first.subscribe<probe::Hop>("probe.hop", [](tern::Context&, const probe::Hop&) {
      return tern::ok();
    });
    first.start(o);
    first.stop();
  }
  {
    tern::Client client(o);
    client.run([&] {
      for (int i = 0; i < 50; ++i) {
        probe::Hop hop;
        hop.set_service(marker);
        auto ctx = tern::Context::with_timeout(5s);
        REQUIRE(tern::publish(ctx, hop).ok());  // confirmed: on disk
      }
    });
  }
  REQUIRE(rabbit_ctl("stop_app") == 0);
  REQUIRE(rabbit_ctl("start_app") == 0);
  tern::Service second(name);
  second.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() == marker) ++handled;
    return tern::ok();
  });
  second.start(o);
  auto until = Clock::now() + 20s;
  while (handled < 50 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  CHECK(handled.load() == 50);
}

TEST_CASE("an event failing during a memory alarm stays unacked until its retry is on the broker, and is not lost") {
  const std::string name = "test.alarm.retry." + tern::new_span_id();
  const std::string queue = name + ".on.probe.hop";
  const std::string marker = tern::new_trace_id();
  std::atomic<bool> started{false}, release{false};
  std::atomic<int> handled{0};
  tern::Options o = tern::Options::from_env();
  o.threads = 1;
  o.event_retry_ms = 100;
  o.drain_timeout_ms = 500;
  auto first = std::make_unique<tern::Service>(name);
  // Fails the marked event once the test has raised the alarm.
  first->subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() != marker) return tern::ok();
    started = true;
    const auto until = Clock::now() + 15s;
    while (!release && Clock::now() < until) boost::this_fiber::sleep_for(5ms);
    return tern::Error{tern::Code::kInternal, "failing during the alarm"};
  });
  first->start(o);
  {
    tern::Client client(o);
    probe::Hop hop;
    hop.set_service(marker);
    REQUIRE(client.run([&] {
      auto ctx = tern::Context::with_timeout(5s);
      return tern::publish(ctx, hop);
    }).ok());
  }
  auto give_up = Clock::now() + 10s;
  while (!started && Clock::now() < give_up) std::this_thread::sleep_for(1ms);
  REQUIRE(started.load());
  {
    MemoryAlarm alarm;
    release = true;   // the handler fails; its retry copy cannot reach the broker
    // The original must stay unacked while the copy is unconfirmed (acking
    // it at once would leave the event only in a blocked socket).
    int n = -1;
    bool stayed = true;
    const auto watch_until = Clock::now() + 1500ms;
    while (Clock::now() < watch_until) {
      n = unacked(queue);
      if (n == 0) stayed = false;
      std::this_thread::sleep_for(100ms);
    }
    CHECK(stayed);
    CHECK(n == 1);
    first.reset();   // the subscriber goes away mid-alarm
  }
  // A new subscriber gets the event: it was never lost.
  tern::Service second(name);
  second.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop& hop) {
    if (hop.service() == marker) ++handled;
    return tern::ok();
  });
  second.start(o);
  const auto until = Clock::now() + 40s;
  while (handled.load() == 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  CHECK(handled.load() >= 1);
}

TEST_CASE("reconnecting through a node that accepts TCP and never answers stalls neither the thread nor the other URL") {
  // A listener that never accepts: the TCP handshake completes (backlog),
  // the AMQP handshake never does. Loopback only.
  const int hole = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(hole >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(hole, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(hole, 16) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(hole, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string real = tern::Options::from_env().amqp_url;
  tern::Options o = tern::Options::from_env();
  o.threads = 1;
  // The dead node first: after losing the real one, the link tries it next.
  o.amqp_url = fmt::format("{},{}", broker_url_at(ntohs(addr.sin_port)), real);
  // Whichever node it tries first, it ends up on the real one: the only one
  // that answers (the dead one costs the first connect its 10 s timeout).
  std::optional<tern::Client> client;
  client.emplace(o);
  const std::string name = "test.blackhole." + tern::new_span_id();
  tern::Service svc(name);
  svc.handle("probe", [](tern::Context&, const probe::ProbeRequest&) -> tern::Result<probe::ProbeResponse> {
    return probe::ProbeResponse{};
  });
  tern::Options so = tern::Options::from_env();
  so.threads = 1;
  svc.start(so);
  // A fiber on the client's thread that ticks every 10 ms.
  std::atomic<int> ticks{0};
  std::atomic<bool> stop{false}, ended{false};
  client->run([&] {
    boost::fibers::fiber([&] {
      while (!stop) {
        ticks.fetch_add(1);
        boost::this_fiber::sleep_for(10ms);
      }
      ended = true;
    }).detach();
  });
  int during = 0;
  {
    BrokerStopped stopped;   // the link is lost; its next attempt starts with the dead node
    const int before = ticks.load();
    std::this_thread::sleep_for(2s);
    during = ticks.load() - before;
  }
  INFO(during << " ticks in the 2 s after the link was lost");
  CHECK(during >= 50);   // ~200 if the thread runs; 0 if it blocks in the dead node's handshake
  // And the real node is reached after the dead one gives up.
  tern::Result<probe::ProbeResponse> after = tern::Error{};
  const auto until = Clock::now() + 60s;
  while (Clock::now() < until) {
    auto ctx = tern::Context::with_timeout(2s);
    after = client->call<probe::ProbeResponse>(ctx, name, "probe", probe::ProbeRequest{});
    if (after.ok()) break;
    std::this_thread::sleep_for(200ms);
  }
  INFO((after.ok() ? "ok" : after.error().to_string()));
  CHECK(after.ok());
  stop = true;
  const auto give_up = Clock::now() + 5s;
  while (!ended && Clock::now() < give_up) std::this_thread::sleep_for(10ms);
  close(hole);
}
