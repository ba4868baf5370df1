// Retries, attempt numbers, idempotent timeouts and circuit breaking, against
// the real broker.
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using probe::ProbeRequest;
using probe::ProbeResponse;

namespace {

tern::Options options() { return broker_options(); }

// A service whose handler is given by the test.
struct TestService {
  template <class F>
  TestService(const std::string& name, F handler, tern::Options o = options()) : svc(name) {
    svc.handle("probe", std::move(handler));
    svc.start(o);
  }
  tern::Service svc;
};

}  // namespace

TEST_CASE("a retryable failure is retried and the attempt number travels with each attempt") {
  const std::string name = unique_service("retry");
  std::atomic<int> runs{0};
  TestService s(name, [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    ++runs;
    if (ctx.attempt() < 3) return tern::Error{tern::Code::kUnavailable, "not yet"};
    ProbeResponse r;
    r.set_instance(std::to_string(ctx.attempt()));
    return r;
  });
  tern::Client client(options());
  auto ctx = tern::Context::with_timeout(5s);
  auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  REQUIRE(r.ok());
  CHECK(r->instance() == "3");
  CHECK(runs.load() == 3);
}

TEST_CASE("the final error says how many attempts were made") {
  const std::string name = unique_service("retries");
  std::atomic<int> runs{0};
  TestService s(name, [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    ++runs;
    return tern::Error{tern::Code::kUnavailable, "down"};
  });
  tern::Client client(options());
  auto ctx = tern::Context::with_timeout(5s);
  auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, {.max_attempts = 4});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == tern::Code::kUnavailable);
  CHECK(r.error().params.at("attempts") == "4");
  CHECK_THAT(r.error().message, Catch::Contains("after 4 attempts"));
  CHECK(runs.load() == 4);
}

TEST_CASE("failures that are not retryable are not retried") {
  const std::string name = unique_service("noretry");
  std::atomic<int> runs{0};
  TestService s(name, [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    ++runs;
    return tern::Error{tern::Code::kInvalidArgument, "bad"};
  });
  tern::Client client(options());
  auto ctx = tern::Context::with_timeout(5s);
  auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  CHECK(r.code() == tern::Code::kInvalidArgument);
  CHECK(runs.load() == 1);
}

TEST_CASE("a timed-out attempt is retried only when the endpoint is idempotent") {
  const std::string name = unique_service("idempotent");
  std::atomic<int> runs{0};
  // The first attempt of each call is slow, later ones are fast.
  TestService s(name, [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    ++runs;
    if (ctx.attempt() == 1) boost::this_fiber::sleep_for(2s);
    ProbeResponse r;
    r.set_instance(std::to_string(ctx.attempt()));  // which attempt answered
    return r;
  });
  tern::Client client(options());
  {
    auto ctx = tern::Context::with_timeout(3s);
    auto start = Clock::now();
    auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{},
                                        {.timeout = 3s, .attempt_timeout = 100ms, .idempotent = true});
    REQUIRE(r.ok());
    CHECK(r->instance() == "2");
    CHECK(Clock::now() - start < 1500ms);  // not the first attempt's 2 s
  }
  {
    auto ctx = tern::Context::with_timeout(3s);
    auto start = Clock::now();
    auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{},
                                        {.timeout = 3s, .attempt_timeout = 100ms, .idempotent = false});
    CHECK(r.code() == tern::Code::kDeadlineExceeded);
    CHECK(r.error().params.at("attempts") == "1");
    CHECK(Clock::now() - start < 1s);  // its 100 ms attempt timeout, not the call's 3 s
  }
}

TEST_CASE("a circuit opens on repeated failures and fails fast then closes after a good probe") {
  const std::string name = unique_service("circuit");
  std::atomic<bool> healthy{false};
  std::atomic<int> runs{0};
  TestService s(name, [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    ++runs;
    if (!healthy) return tern::Error{tern::Code::kInternal, "broken"};
    return ProbeResponse{};
  });
  tern::Options o = options();
  o.circuit_open_ms = 300;
  tern::Client client(o);
  auto call = [&] {
    auto ctx = tern::Context::with_timeout(2s);
    return client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  };
  // INTERNAL is not retried: one run per call. 20 failures open the circuit.
  for (int i = 0; i < 20; ++i) CHECK(call().code() == tern::Code::kInternal);
  const int before = runs.load();
  auto fast = call();
  CHECK(fast.code() == tern::Code::kUnavailable);
  CHECK(fast.error().params.at("circuit") == "open");
  CHECK(runs.load() == before);  // failed fast: the service never saw it
  healthy = true;
  std::this_thread::sleep_for(350ms);  // open_for passes: the next call is the probe
  CHECK(call().ok());
  CHECK(call().ok());  // closed again
}

namespace {
// 20 calls at once to a service that handles one at a time and queues 3.
void check_overload_pushed_back(const std::string& request_queue_type) {
  const std::string name = unique_service("overload");
  tern::Options o = options();
  o.concurrency = 1;
  o.max_queue_length = 3;
  o.request_queue_type = request_queue_type;
  TestService s(name, [](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    boost::this_fiber::sleep_for(300ms);
    return ProbeResponse{};
  }, o);
  tern::Client client(options());
  int ok = 0, exhausted = 0, other = 0;
  Clock::duration slowest_refusal{};
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int i = 0; i < 20; ++i) {
      fibers.emplace_back([&] {
        auto ctx = tern::Context::with_timeout(5s);
        auto start = Clock::now();
        auto r = tern::call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, {.timeout = 5s});
        if (r.ok()) ++ok;
        else if (r.code() == tern::Code::kResourceExhausted) {
          ++exhausted;
          slowest_refusal = std::max(slowest_refusal, Clock::now() - start);
        } else ++other;
      });
    }
    for (auto& f : fibers) f.join();
  });
  INFO(ok << " ok, " << exhausted << " refused, " << other << " other");
  CHECK(ok + exhausted == 20);
  CHECK(ok >= 4);          // one running and three queued at least
  CHECK(exhausted >= 10);  // the rest are refused
  CHECK(slowest_refusal < 1s);  // at once, not at the deadline
}
}  // namespace

TEST_CASE("an overloaded service pushes back with RESOURCE_EXHAUSTED instead of queueing without limit") {
  check_overload_pushed_back("classic");  // refuses the newest
}

TEST_CASE("a quorum request queue pushes overload back with RESOURCE_EXHAUSTED too") {
  check_overload_pushed_back("quorum");  // drops the oldest (no reject-publish-dlx)
}

TEST_CASE("a call with an idempotency key runs its handler once across retries and repeats") {
  const std::string name = unique_service("once");
  std::atomic<int> runs{0};
  TestService s(name, [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    int run = ++runs;
    if (ctx.attempt() == 1) boost::this_fiber::sleep_for(300ms);  // the first attempt times out
    ProbeResponse r;
    r.set_instance("run " + std::to_string(run));
    return r;
  });
  tern::Client client(options());
  const std::string key = tern::new_trace_id();
  tern::CallOptions opts{.timeout = 3s, .max_attempts = 5, .attempt_timeout = 100ms, .idempotency_key = key};
  auto ctx = tern::Context::with_timeout(3s);
  auto first = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, opts);
  REQUIRE(first.ok());
  CHECK(first->instance() == "run 1");  // the retry waited for the first run's answer
  auto again = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, opts);
  REQUIRE(again.ok());
  CHECK(again->instance() == "run 1");
  CHECK(runs.load() == 1);
  // Another key is another operation.
  opts.idempotency_key = tern::new_trace_id();
  auto other = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, opts);
  CHECK(runs.load() == 2);
}

TEST_CASE("an endpoint over its rate limit answers RESOURCE_EXHAUSTED without running the handler") {
  const std::string name = unique_service("ratelimit");
  std::atomic<int> runs{0};
  tern::Service svc(name);
  svc.handle("probe", [&](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    ++runs;
    return ProbeResponse{};
  });
  svc.rate_limit("probe", /*per_second=*/1, /*burst=*/5);
  svc.start(options());
  tern::Client client(options());
  int ok = 0, limited = 0;
  for (int i = 0; i < 10; ++i) {
    auto ctx = tern::Context::with_timeout(2s);
    auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
    if (r.ok()) ++ok;
    else if (r.code() == tern::Code::kResourceExhausted) ++limited;
  }
  CHECK(ok >= 5);
  CHECK(ok <= 6);  // the burst, plus at most one token refilled meanwhile
  CHECK(limited == 10 - ok);
  CHECK(runs.load() == ok);
}

TEST_CASE("a client over its in-flight bound gets RESOURCE_EXHAUSTED at once") {
  const std::string name = unique_service("inflight");
  TestService s(name, [](tern::Context&, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    boost::this_fiber::sleep_for(300ms);
    return ProbeResponse{};
  });
  tern::Options o = options();
  o.max_in_flight = 5;
  tern::Client client(o);
  int ok = 0, refused = 0;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int i = 0; i < 8; ++i) {
      fibers.emplace_back([&] {
        auto ctx = tern::Context::with_timeout(3s);
        auto r = tern::call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, {.timeout = 3s});
        if (r.ok()) ++ok;
        else if (r.code() == tern::Code::kResourceExhausted) ++refused;
      });
    }
    for (auto& f : fibers) f.join();
  });
  CHECK(ok == 5);
  CHECK(refused == 3);
}

namespace {
// Works until its context is cancelled (or 5 s pass); reports what it saw.
struct CancelWatch {
  std::atomic<bool> saw_cancel{false};
  std::atomic<bool> finished{false};
  Clock::time_point cancelled_at{};
  tern::Result<ProbeResponse> operator()(tern::Context& ctx, const ProbeRequest&) {
    auto until = Clock::now() + 5s;
    while (!ctx.cancelled() && Clock::now() < until) boost::this_fiber::sleep_for(5ms);
    if (ctx.cancelled()) {
      cancelled_at = Clock::now();
      saw_cancel = true;
    }
    finished = true;
    return tern::Error{tern::Code::kCancelled, "stopped"};
  }
};

bool await_flag(const std::atomic<bool>& flag, std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  while (!flag && Clock::now() < until) std::this_thread::sleep_for(2ms);
  return flag;
}
}  // namespace

TEST_CASE("a caller that gives up cancels the context of the handler still running its request") {
  const std::string name = unique_service("interrupt");
  CancelWatch watch;
  TestService s(name, [&](tern::Context& ctx, const ProbeRequest& req) { return watch(ctx, req); });
  tern::Client client(options());
  auto ctx = tern::Context::with_timeout(200ms);
  auto start = Clock::now();
  auto r = client.call<ProbeResponse>(ctx, name, "probe", ProbeRequest{});
  CHECK(r.code() == tern::Code::kDeadlineExceeded);
  REQUIRE(await_flag(watch.finished, 3s));
  CHECK(watch.saw_cancel);
  CHECK(watch.cancelled_at - start < 1s);  // at the caller's timeout, not the handler's 5 s
}

TEST_CASE("cancellation reaches the downstream calls of a cancelled handler") {
  const std::string front = unique_service("cancelfront");
  const std::string back = unique_service("cancelback");
  CancelWatch watch;
  TestService b(back, [&](tern::Context& ctx, const ProbeRequest& req) { return watch(ctx, req); });
  std::atomic<int> front_code{-1};
  TestService f(front, [&](tern::Context& ctx, const ProbeRequest&) -> tern::Result<ProbeResponse> {
    auto r = tern::call<ProbeResponse>(ctx, back, "probe", ProbeRequest{}, {.timeout = 10s});
    front_code = static_cast<int>(r.code());
    return r;
  });
  tern::Client client(options());
  auto ctx = tern::Context::with_timeout(300ms);
  auto start = Clock::now();
  auto r = client.call<ProbeResponse>(ctx, front, "probe", ProbeRequest{});
  CHECK(r.code() == tern::Code::kDeadlineExceeded);
  REQUIRE(await_flag(watch.finished, 3s));
  CHECK(watch.saw_cancel);
  CHECK(watch.cancelled_at - start < 1500ms);
  // The front's call ends at the same moment: cancelled by the notice or
  // at the deadline it inherited, whichever its fiber saw first.
  CHECK((front_code.load() == static_cast<int>(tern::Code::kCancelled) ||
         front_code.load() == static_cast<int>(tern::Code::kDeadlineExceeded)));
}

TEST_CASE("an explicit cancel ends the waiting call and cancels the handler") {
  const std::string name = unique_service("explicit");
  CancelWatch watch;
  TestService s(name, [&](tern::Context& ctx, const ProbeRequest& req) { return watch(ctx, req); });
  tern::Client client(options());
  auto ctx = tern::Context::with_timeout(5s);
  tern::Result<ProbeResponse> r = tern::Error{};
  auto start = Clock::now();
  client.run([&] {
    boost::fibers::fiber caller([&] {
      r = tern::call<ProbeResponse>(ctx, name, "probe", ProbeRequest{}, {.timeout = 5s});
    });
    boost::this_fiber::sleep_for(100ms);
    ctx.cancel();  // from another fiber, as a user's code would
    caller.join();
  });
  CHECK(r.code() == tern::Code::kCancelled);
  CHECK(Clock::now() - start < 1s);
  REQUIRE(await_flag(watch.finished, 3s));
  CHECK(watch.saw_cancel);
}
