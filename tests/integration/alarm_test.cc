// Broker memory and disk alarms: the broker stops reading connections that
// publish. Calls and events made while tern's publishing connection is
// blocked fail fast with a typed error instead of waiting out their
// deadlines, the client's memory stays bounded, and everything flows again
// once the alarm clears. Raises the alarms on the private node scripts/test
// started, and always clears them.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <fstream>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "rabbit_ctl.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// An alarm raised for the scope, cleared however the test ends.
struct Alarm {
  std::string clear;
  Alarm(const std::string& raise, std::string clear_with) : clear(std::move(clear_with)) {
    REQUIRE(rabbit::ctl(raise) == 0);
  }
  ~Alarm() { rabbit::ctl(clear); }
};
Alarm memory_alarm() { return Alarm("set_vm_memory_high_watermark 0.0000001", "set_vm_memory_high_watermark 0.4"); }
// 1 PB free needed: always short. 50 MB is the default limit. The broker
// says "low on disk".
Alarm disk_alarm() { return Alarm("set_disk_free_limit 1000000000000000", "set_disk_free_limit 50000000"); }

// The broker's state of the connection named `name`: "blocked", "blocking", "running".
std::string connection_state(const std::string& name) {
  const std::string all = rabbit::output("list_connections state client_properties");
  for (size_t at = 0; at < all.size();) {
    const size_t end = all.find('\n', at);
    const std::string line = all.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.find("\"" + name + "\"") != std::string::npos) return line.substr(0, line.find('\t'));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return {};
}

bool says_blocked(const tern::Error& e, const std::string& alarm) {
  return e.code == tern::Code::kUnavailable && e.message.find("the broker blocked publishing: " + alarm) != std::string::npos;
}

size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// The body shared by the memory and the disk alarm.
void calls_fail_fast_during(Alarm (*raise)(), const std::string& alarm_text) {
  const std::string name = unique_service("alarm.fast");
  const std::string client_name = "test.alarm.client." + tern::new_span_id();
  tern::Service svc(name);
  std::atomic<int> handled{0};
  svc.handle("probe", [&](tern::Context&, const probe::ProbeRequest&) -> tern::Result<probe::ProbeResponse> {
    ++handled;
    return probe::ProbeResponse{};
  });
  tern::Options o = broker_options();
  svc.start(o);
  tern::Client client(o, client_name);
  auto call = [&](std::chrono::milliseconds timeout, int attempts) {
    auto ctx = tern::Context::with_timeout(timeout);
    return client.call<probe::ProbeResponse>(ctx, name, "probe", probe::ProbeRequest{},
                                             {.timeout = timeout, .max_attempts = attempts});
  };
  REQUIRE(call(5s, 1).ok());
  {
    Alarm alarm = raise();
    // The broker says it blocks a connection only once that connection
    // publishes: the first call after the alarm goes out and is held by the
    // broker (it ends at its deadline, or once the alarm clears). After
    // that, calls fail fast.
    tern::Result<probe::ProbeResponse> first = tern::Error{};
    for (auto until = Clock::now() + 20s; Clock::now() < until;) {
      first = call(1s, 1);
      if (!first.ok() && says_blocked(first.error(), alarm_text)) break;
    }
    INFO("the first calls: " << (first.ok() ? "ok" : first.error().to_string()));
    REQUIRE_FALSE(first.ok());
    REQUIRE(says_blocked(first.error(), alarm_text));
    const std::string state = connection_state(client_name + " publish");
    INFO("the broker's state of the client's publishing connection: " << state);
    CHECK(state == "blocked");   // the alarm is real, and it is the broker that blocks us

    // Calls with a 5 s deadline, retried as usual (3 attempts): each ends
    // well under it, UNAVAILABLE, retryable, not sent, naming the alarm.
    const int before = handled.load();
    std::chrono::milliseconds slowest{0};
    for (int i = 0; i < 20; ++i) {
      const auto start = Clock::now();
      auto r = call(5s, 3);
      slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start));
      REQUIRE_FALSE(r.ok());
      INFO(r.error().to_string());
      CHECK(says_blocked(r.error(), alarm_text));
      CHECK(r.error().retryable);
      CHECK(r.error().params.at("outcome") == "not sent");
    }
    // And an event publish with a 5 s deadline.
    const auto start = Clock::now();
    tern::Error published = client.run([&] {
      auto ctx = tern::Context::with_timeout(5s);
      probe::Hop hop;
      return tern::publish(ctx, hop);
    });
    const auto publish_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    std::printf("%s alarm: 20 calls with a 5 s deadline failed in at most %lld ms each; an event publish in %lld ms: %s\n",
                alarm_text.c_str(), static_cast<long long>(slowest.count()), static_cast<long long>(publish_ms.count()),
                published.to_string().c_str());
    CHECK(slowest < 1500ms);
    CHECK(says_blocked(published, alarm_text));
    CHECK(published.params.at("outcome") == "not sent");
    CHECK(publish_ms < 500ms);
    CHECK(handled.load() == before);   // "not sent" is true: the handler never ran for them
  }
  // Cleared: calls and events flow again (the held first call may have run).
  tern::Result<probe::ProbeResponse> after = tern::Error{};
  for (auto until = Clock::now() + 30s; Clock::now() < until; std::this_thread::sleep_for(100ms))
    if ((after = call(2s, 1)).ok()) break;
  INFO((after.ok() ? "ok" : after.error().to_string()));
  CHECK(after.ok());
  tern::Error published = client.run([&] {
    auto ctx = tern::Context::with_timeout(5s);
    probe::Hop hop;
    return tern::publish(ctx, hop);
  });
  CHECK(published.ok());
}

}  // namespace

TEST_CASE("during a broker memory alarm calls and events fail fast with UNAVAILABLE naming it, and flow once it clears") {
  calls_fail_fast_during(&memory_alarm, "low on memory");
}

TEST_CASE("during a broker disk alarm calls and events fail fast with UNAVAILABLE naming it, and flow once it clears") {
  calls_fail_fast_during(&disk_alarm, "low on disk");
}

TEST_CASE("a publish loop during a memory alarm keeps the client's memory bounded") {
  tern::Options o = broker_options();
  tern::Client client(o, "test.alarm.loop." + tern::new_span_id());
  REQUIRE(client.run([&] {
    auto ctx = tern::Context::with_timeout(5s);
    return tern::publish(ctx, probe::Hop{});
  }).ok());
  const size_t rss_before = rss_bytes();
  size_t rss_max = rss_before;
  std::atomic<int> blocked{0}, other{0};
  constexpr int kFibers = 64, kEach = 60;   // 3840 publishes of 64 KiB: 240 MiB if they all queued
  {
    Alarm alarm = memory_alarm();
    client.run([&] {
      std::vector<boost::fibers::fiber> fibers;
      for (int f = 0; f < kFibers; ++f)
        fibers.emplace_back([&] {
          probe::Hop hop;
          hop.set_service(std::string(64 * 1024, 'x'));
          for (int i = 0; i < kEach; ++i) {
            auto ctx = tern::Context::with_timeout(50ms);
            tern::Error e = tern::publish(ctx, hop);
            if (says_blocked(e, "low on memory")) ++blocked;
            else ++other;
            rss_max = std::max(rss_max, rss_bytes());
            boost::this_fiber::yield();
          }
        });
      for (auto& fb : fibers) fb.join();
    });
  }
  const double grew_mib = static_cast<double>(rss_max - rss_before) / (1 << 20);
  std::printf("memory alarm: %d publishes of 64 KiB refused as blocked, %d otherwise (the first, held); "
              "the client's RSS grew by %.1f MiB at most\n", blocked.load(), other.load(), grew_mib);
  CHECK(blocked.load() > kFibers * kEach * 9 / 10);
  CHECK(grew_mib < 48.0);   // 16 MiB output buffer cap, plus slack
  // Cleared: publishing works again.
  tern::Error after = tern::Error{};
  for (auto until = Clock::now() + 30s; Clock::now() < until; std::this_thread::sleep_for(100ms)) {
    after = client.run([&] {
      auto ctx = tern::Context::with_timeout(2s);
      return tern::publish(ctx, probe::Hop{});
    });
    if (after.ok()) break;
  }
  CHECK(after.ok());
}
