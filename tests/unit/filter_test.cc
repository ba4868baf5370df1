// Filter chains without a broker: the order filters run in, the platform's
// client steps (retries, breaker) around a fake wire, idempotent replay
// waking its waiters, and local failure state never crossing the wire.
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "core/wire.h"
#include "rpc/client/client_filters.h"
#include "rpc/server/replay.h"
#include "tern/envelope.pb.h"
#include "tern/filter.h"

using namespace std::chrono_literals;
using tern::Code;
using tern::Error;
using tern::Result;

TEST_CASE("server filters run in order around the endpoint, and one may answer without it") {
  std::vector<std::string> seen;
  std::vector<tern::ServerFilter> chain;
  for (std::string name : {"a", "b"})
    chain.push_back([&seen, name](tern::Context& ctx, const tern::IncomingRequest& req, const tern::ServerNext& next) {
      seen.push_back(name + ">");
      auto r = next(ctx, req);
      seen.push_back("<" + name);
      return r;
    });
  tern::ServerEndpoint endpoint = [&](tern::Context&, const tern::IncomingRequest& req) -> Result<std::string> {
    seen.push_back("endpoint");
    return std::string(req.body);
  };
  auto ctx = tern::Context::with_timeout(1s);
  tern::IncomingRequest req;
  req.body = "hello";
  auto r = tern::run_chain(chain, endpoint, ctx, req);
  REQUIRE(r.ok());
  CHECK(*r == "hello");
  CHECK(seen == std::vector<std::string>{"a>", "b>", "endpoint", "<b", "<a"});

  seen.clear();
  chain.insert(chain.begin() + 1, [](tern::Context&, const tern::IncomingRequest&, const tern::ServerNext&)
                                      -> Result<std::string> {
    return Error{Code::kUnauthenticated, "no token"};
  });
  r = tern::run_chain(chain, endpoint, ctx, req);
  CHECK(r.code() == Code::kUnauthenticated);
  CHECK(seen == std::vector<std::string>{"a>", "<a"});   // b and the endpoint never ran
}

namespace {
// A call to service.x/e with these options (which must outlive it).
tern::OutgoingCall call_to_x(const tern::CallOptions& opts) {
  tern::OutgoingCall call;
  call.service = "service.x";
  call.endpoint = "e";
  call.options = &opts;
  return call;
}

struct FakeWire {
  std::vector<Code> results;   // one per attempt; past the end: OK
  std::vector<uint32_t> attempts;
  tern::ClientEndpoint endpoint() {
    return [this](const tern::Context&, tern::OutgoingCall& call) -> Result<std::string> {
      attempts.push_back(call.attempt);
      const size_t n = attempts.size() - 1;
      if (n < results.size() && results[n] != Code::kOk) return Error{results[n], "injected"};
      return std::string("reply");
    };
  }
};
}  // namespace

TEST_CASE("the retry step retries a retryable failure a filter injects, numbering the attempts") {
  tern::detail::RetryBudget budget;
  FakeWire wire{{Code::kUnavailable, Code::kUnavailable}};
  const std::vector<tern::ClientFilter> chain = {tern::detail::client_filters::deadline(),
                                                 tern::detail::client_filters::retries(budget, "test")};
  tern::CallOptions opts;
  tern::OutgoingCall call = call_to_x(opts);
  auto ctx = tern::Context::with_timeout(5s);
  auto r = tern::run_chain(chain, wire.endpoint(), ctx, call);
  REQUIRE(r.ok());
  CHECK(wire.attempts == std::vector<uint32_t>{1, 2, 3});

  // Not retryable: one attempt, and the error says how many were made.
  FakeWire internal{{Code::kInternal}};
  auto failed = tern::run_chain(chain, internal.endpoint(), ctx, call);
  REQUIRE_FALSE(failed.ok());
  CHECK(internal.attempts.size() == 1);
  CHECK(failed.error().params.at("attempts") == "1");
}

TEST_CASE("a request whose outcome is unknown is retried only when it is idempotent or keyed") {
  tern::detail::RetryBudget budget;
  const std::vector<tern::ClientFilter> chain = {tern::detail::client_filters::deadline(),
                                                 tern::detail::client_filters::retries(budget, "test")};
  int sent = 0;
  tern::ClientEndpoint lost_after_publish = [&](const tern::Context&, tern::OutgoingCall&) -> Result<std::string> {
    if (++sent > 1) return std::string("reply");
    Error e{Code::kUnavailable, "broker connection lost; the request was sent, its outcome is unknown"};
    e.retryable = false;
    e.local.link_failed = true;
    e.local.outcome_unknown = true;
    return e;
  };
  auto ctx = tern::Context::with_timeout(5s);
  for (int kind = 0; kind < 3; ++kind) {
    tern::CallOptions opts;
    if (kind == 1) opts.idempotent = true;
    if (kind == 2) opts.idempotency_key = "k";
    tern::OutgoingCall call = call_to_x(opts);
    sent = 0;
    auto r = tern::run_chain(chain, lost_after_publish, ctx, call);
    INFO("kind " << kind);
    if (kind == 0) {
      CHECK(sent == 1);   // it may have run: not sent again
      CHECK(r.code() == Code::kUnavailable);
    } else {
      CHECK(sent == 2);   // safe to run twice: retried
      CHECK(r.ok());
    }
  }
}

TEST_CASE("the breaker opens on the downstream's failures, not on this process's own lost link or a missing queue") {
  tern::detail::CircuitBreakers breakers(tern::detail::CircuitBreakerOptions{.open_for = 60s});
  const std::vector<tern::ClientFilter> chain = {tern::detail::client_filters::breaker(breakers, "test")};
  tern::CallOptions opts;
  tern::OutgoingCall call = call_to_x(opts);
  auto ctx = tern::Context::with_timeout(5s);
  int sent = 0;
  Error link_failure{Code::kUnavailable, "broker connection lost"};
  link_failure.local.link_failed = true;
  tern::ClientEndpoint lost = [&](const tern::Context&, tern::OutgoingCall&) -> Result<std::string> {
    ++sent;
    return link_failure;
  };
  for (int i = 0; i < 50; ++i) tern::run_chain(chain, lost, ctx, call);
  CHECK(sent == 50);   // never failed fast: the circuit stayed closed

  // No queue for the service (not up yet): no downstream to protect.
  Error no_route{Code::kUnavailable, "no queue service.x"};
  no_route.local.no_route = true;
  tern::ClientEndpoint missing = [&](const tern::Context&, tern::OutgoingCall&) -> Result<std::string> {
    ++sent;
    return no_route;
  };
  tern::detail::CircuitBreakers fresh(tern::detail::CircuitBreakerOptions{.open_for = 60s});
  const std::vector<tern::ClientFilter> fresh_chain = {tern::detail::client_filters::breaker(fresh, "test")};
  sent = 0;
  for (int i = 0; i < 50; ++i) tern::run_chain(fresh_chain, missing, ctx, call);
  CHECK(sent == 50);

  // The same code from the wire (a downstream's UNAVAILABLE) opens it.
  tern::ClientEndpoint down = [&](const tern::Context&, tern::OutgoingCall&) -> Result<std::string> {
    ++sent;
    return Error{Code::kUnavailable, "downstream unavailable"};
  };
  sent = 0;
  for (int i = 0; i < 200; ++i) tern::run_chain(chain, down, ctx, call);
  CHECK(sent < 200);
  auto fast = tern::run_chain(chain, down, ctx, call);
  CHECK(fast.code() == Code::kUnavailable);
  CHECK(fast.error().params.at("circuit") == "open");
}

TEST_CASE("Error::local never crosses the wire") {
  Error e{Code::kInvalidArgument, "request body is not a valid x.Y"};
  e.params["body"] = "invalid";
  e.local.dead_letter = true;
  e.local.link_failed = true;
  e.local.no_route = true;
  e.local.allow = "GET";
  tern::v1::Error wire;
  tern::detail::to_wire(e, &wire);
  const Error back = tern::detail::from_wire(wire);
  CHECK(back.code == Code::kInvalidArgument);
  CHECK(back.params.at("body") == "invalid");   // params are for the caller to read
  CHECK_FALSE(back.local.dead_letter);
  CHECK_FALSE(back.local.link_failed);
  CHECK_FALSE(back.local.no_route);
  CHECK(back.local.allow.empty());
}

namespace {
// Counts how often the replay step looks a key up.
class CountingStore final : public tern::IdempotencyStore {
 public:
  Entry begin(const std::string& key) override {
    begins.fetch_add(1);
    return inner.begin(key);
  }
  void finish(const std::string& key, std::string reply) override { inner.finish(key, std::move(reply)); }
  void abandon(const std::string& key) override { inner.abandon(key); }
  std::atomic<int> begins{0};
  tern::MemoryIdempotencyStore inner;
};
}  // namespace

TEST_CASE("a repeat waiting on a key in progress is woken when it finishes, not polled") {
  auto store = std::make_shared<CountingStore>();
  // A re-check far past the deadlines: only a wake-up can end the wait.
  tern::detail::Replay replay(store, std::chrono::hours(1));
  tern::IncomingRequest req;
  req.endpoint = "pay";
  req.idempotency_key = "k1";
  int runs = 0;
  bool first_running = false;
  std::vector<tern::ServerFilter> none;
  tern::ServerEndpoint slow = [&](tern::Context&, const tern::IncomingRequest&) -> Result<std::string> {
    ++runs;
    first_running = true;
    boost::this_fiber::sleep_for(150ms);
    return std::string("paid");
  };
  tern::ServerEndpoint step = [&](tern::Context& ctx, const tern::IncomingRequest& r) {
    return replay.run(ctx, r, tern::ServerNext(&none, 0, &slow));
  };
  Result<std::string> first = Error{}, second = Error{};
  int second_begins = 0;
  std::chrono::steady_clock::duration second_took{};
  boost::fibers::fiber a([&] {
    auto ctx = tern::Context::with_timeout(5s);
    first = step(ctx, req);
  });
  boost::fibers::fiber b([&] {
    while (!first_running) boost::this_fiber::yield();   // the first holds the key
    const int before = store->begins.load();
    auto ctx = tern::Context::with_timeout(10s);
    const auto start = std::chrono::steady_clock::now();
    second = step(ctx, req);
    second_took = std::chrono::steady_clock::now() - start;
    second_begins = store->begins.load() - before;
  });
  a.join();
  b.join();
  CHECK(runs == 1);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(*second == "paid");
  // One look before waiting, one after the wake-up; polling every few ms
  // would look dozens of times in 130 ms.
  INFO("the repeat looked the key up " << second_begins << " times");
  CHECK(second_begins == 2);
  // Woken when the first finished (~130 ms later), not at its 10 s deadline.
  CHECK(second_took < 5s);
}

TEST_CASE("a custom idempotency store that throws fails the request, not the process") {
  struct Broken final : tern::IdempotencyStore {
    Entry begin(const std::string&) override { throw std::runtime_error("disk on fire"); }
    void finish(const std::string&, std::string) override {}
    void abandon(const std::string&) override {}
  };
  tern::detail::Replay replay(std::make_shared<Broken>());
  std::vector<tern::ServerFilter> none;
  int runs = 0;
  tern::ServerEndpoint handler = [&](tern::Context&, const tern::IncomingRequest&) -> Result<std::string> {
    ++runs;
    return std::string("x");
  };
  tern::IncomingRequest req;
  req.endpoint = "pay";
  req.idempotency_key = "k";
  auto ctx = tern::Context::with_timeout(1s);
  auto r = replay.run(ctx, req, tern::ServerNext(&none, 0, &handler));
  CHECK(r.code() == Code::kUnavailable);
  CHECK_THAT(r.error().message, Catch::Contains("disk on fire"));
  CHECK(runs == 0);
}
