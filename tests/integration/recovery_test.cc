// What the broker takes back from a running service: a queue deleted under
// its consumer, a channel closed by a channel error. The service puts back
// what it can (the queue, the channel) and only what depended on the lost
// part fails.
#include <catch2/catch.hpp>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <thread>

#include "broker.h"
#include "probe.pb.h"
#include "rabbit_ctl.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A service whose probe handler sleeps sleep_ms, or with a payload, calls
// the service it names (a downstream call of its own, on its own link), and
// counts hop events marked with `marker`.
struct Probed {
  explicit Probed(const std::string& name, const std::string& marker) : svc(name) {
    svc.handle("probe", [this](tern::Context& ctx, const probe::ProbeRequest& req) -> tern::Result<probe::ProbeResponse> {
      ++running;
      tern::Result<probe::ProbeResponse> r = probe::ProbeResponse{};
      if (!req.payload().empty()) {
        probe::ProbeRequest down;
        down.set_sleep_ms(req.sleep_ms());
        r = tern::call<probe::ProbeResponse>(ctx, req.payload(), "probe", down, {.timeout = 20s, .max_attempts = 1});
      } else {
        boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
      }
      --running;
      return r;
    });
    svc.subscribe<probe::Hop>("probe.hop", [this, marker](tern::Context&, const probe::Hop& hop) {
      if (hop.service() == marker) ++events;
      return tern::ok();
    });
  }
  tern::Service svc;
  std::atomic<int> running{0}, events{0};
};

tern::Result<probe::ProbeResponse> probe_call(tern::Client& client, const std::string& service, uint32_t sleep_ms,
                                              std::chrono::milliseconds timeout, const std::string& relay_to = "") {
  probe::ProbeRequest req;
  req.set_sleep_ms(sleep_ms);
  req.set_payload(relay_to);
  auto ctx = tern::Context::with_timeout(timeout);
  return client.call<probe::ProbeResponse>(ctx, service, "probe", req, {.timeout = timeout, .max_attempts = 1});
}

tern::Error publish_hop(tern::Client& client, const std::string& marker) {
  return client.run([&] {
    probe::Hop hop;
    hop.set_service(marker);
    auto ctx = tern::Context::with_timeout(3s);
    return tern::publish(ctx, hop);
  });
}

// Calls that wait on slow handlers meanwhile, from threads of their own.
struct Pending {
  std::vector<std::thread> threads;
  std::vector<tern::Result<probe::ProbeResponse>> results;
  Pending(tern::Client& client, const std::string& service, int n, uint32_t sleep_ms, const std::string& relay_to = "")
      : results(n, tern::Error{}) {
    for (int i = 0; i < n; ++i)
      threads.emplace_back([this, &client, service, sleep_ms, relay_to, i] {
        results[i] = probe_call(client, service, sleep_ms, 30s, relay_to);
      });
  }
  ~Pending() {
    for (auto& t : threads) t.join();
  }
  int ok() {
    for (auto& t : threads) t.join();
    threads.clear();
    int n = 0;
    for (auto& r : results) n += r.ok();
    return n;
  }
  std::string first_error() const {
    for (auto& r : results)
      if (!r.ok()) return r.error().to_string();
    return "none";
  }
};

bool await(const std::function<bool()>& cond, std::chrono::seconds limit) {
  for (auto until = Clock::now() + limit; Clock::now() < until; std::this_thread::sleep_for(10ms))
    if (cond()) return true;
  return false;
}

}  // namespace

TEST_CASE("a request queue and a subscription queue deleted under a running service are declared again and served within 10 s") {
  const std::string name = unique_service("deleted");
  const std::string sub_queue = name + ".on.probe.hop";
  const std::string marker = tern::new_trace_id();
  Probed p(name, marker);
  tern::Options o = broker_options();
  p.svc.start(o);
  tern::Client client(o);
  REQUIRE(probe_call(client, name, 0, 5s).ok());

  // The request queue, while its handler waits for a slow downstream call
  // it made on the service's own link (which a reconnect would fail).
  Probed downstream(name + ".down", "none");
  downstream.svc.start(o);
  const std::string pid_before = rabbit::queue_field(name, "pid");
  REQUIRE_FALSE(pid_before.empty());
  Pending pending(client, name, 1, 3000, name + ".down");
  REQUIRE(await([&] { return downstream.running.load() == 1; }, 10s));
  REQUIRE(rabbit::ctl("delete_queue " + name) == 0);
  const auto deleted_at = Clock::now();
  tern::Result<probe::ProbeResponse> again = tern::Error{};
  await([&] { return (again = probe_call(client, name, 0, 1s)).ok(); }, 10s);
  const auto back_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - deleted_at).count();
  INFO((again.ok() ? "ok" : again.error().to_string()));
  REQUIRE(again.ok());
  const std::string pid_after = rabbit::queue_field(name, "pid");
  const std::string consumers = rabbit::queue_field(name, "consumers");
  std::printf("request queue deleted (pid %s, now %s with %s consumer): calls served again after %lld ms\n",
              pid_before.c_str(), pid_after.c_str(), consumers.c_str(), static_cast<long long>(back_ms));
  CHECK(pid_after != pid_before);   // a new queue: the old one really went
  CHECK(consumers == "1");
  INFO(pending.first_error());
  CHECK(pending.ok() == 1);         // the call in flight, and its downstream call, were not failed

  // The subscription queue: its binding goes with it, and comes back.
  REQUIRE(publish_hop(client, marker).ok());
  REQUIRE(await([&] { return p.events.load() == 1; }, 10s));
  const std::string sub_pid_before = rabbit::queue_field(sub_queue, "pid");
  REQUIRE(rabbit::ctl("delete_queue " + sub_queue) == 0);
  const auto sub_deleted_at = Clock::now();
  // Events published while no queue is bound are lost (confirmed: the
  // broker confirms unroutable messages): publish until one arrives.
  bool delivered = await([&] {
    REQUIRE(publish_hop(client, marker).ok());
    return p.events.load() >= 2;
  }, 10s);
  const auto sub_back_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sub_deleted_at).count();
  const std::string sub_pid_after = rabbit::queue_field(sub_queue, "pid");
  std::printf("subscription queue deleted (pid %s, now %s): events handled again after %lld ms\n",
              sub_pid_before.c_str(), sub_pid_after.c_str(), static_cast<long long>(sub_back_ms));
  CHECK(delivered);
  CHECK(sub_pid_after != sub_pid_before);
  CHECK(probe_call(client, name, 0, 5s).ok());
}

namespace {
// Deletes a durable exchange tern declares, and declares it again at the
// end, as tern does, for the tests that follow.
struct ExchangeDeleted {
  amqp_connection_state_t conn;
  std::string name, type;
  ExchangeDeleted(std::string n, std::string t) : name(std::move(n)), type(std::move(t)) {
    conn = open();
    amqp_exchange_delete(conn, 1, amqp_cstring_bytes(name.c_str()), 0);
    REQUIRE(amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL);
  }
  ~ExchangeDeleted() {
    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(name.c_str()), amqp_cstring_bytes(type.c_str()), 0, 1, 0, 0,
                          amqp_empty_table);
    amqp_get_rpc_reply(conn);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
  }
  static amqp_connection_state_t open() {
    const char* url = std::getenv("TERN_AMQP_URL");
    std::vector<char> buf(url, url + std::strlen(url) + 1);
    amqp_connection_info info;
    amqp_parse_url(buf.data(), &info);
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_open(amqp_tcp_socket_new(c), info.host, info.port);
    REQUIRE(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password).reply_type ==
            AMQP_RESPONSE_NORMAL);
    amqp_channel_open(c, 1);
    REQUIRE(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
    return c;
  }
};
}  // namespace

TEST_CASE("a channel error from one event publish fails that publish, not the calls waiting on slow handlers") {
  const std::string name = unique_service("chanerr");
  Probed p(name, "none");
  tern::Options o = broker_options();
  p.svc.start(o);
  tern::Client client(o);
  REQUIRE(probe_call(client, name, 0, 5s).ok());
  Pending pending(client, name, 5, 2000);
  REQUIRE(await([&] { return p.running.load() == 5; }, 10s));
  tern::Error published;
  std::chrono::milliseconds publish_ms{};
  {
    ExchangeDeleted gone(tern::kEventExchange, "topic");
    // 404 NOT_FOUND from the broker: it closes the client's event channel.
    const auto start = Clock::now();
    published = publish_hop(client, "none");
    publish_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  }
  const int ok = pending.ok();
  std::printf("event publish to a deleted tern.events: %s after %lld ms; %d of 5 calls waiting meanwhile ok\n",
              published.to_string().c_str(), static_cast<long long>(publish_ms.count()), ok);
  CHECK(published.code == tern::Code::kUnavailable);
  CHECK(published.message.find("NOT_FOUND") != std::string::npos);
  CHECK(published.params["outcome"] == "unknown");
  CHECK(publish_ms < 2s);
  INFO(pending.first_error());
  CHECK(ok == 5);
  // The channel is open again: events and calls go on.
  CHECK(publish_hop(client, "none").ok());
  CHECK(probe_call(client, name, 0, 5s).ok());
}

TEST_CASE("a channel error from a cancel notice fails no call waiting on slow handlers") {
  const std::string name = unique_service("chanerr.cancel");
  Probed p(name, "none");
  tern::Options o = broker_options();
  p.svc.start(o);
  tern::Client client(o);
  REQUIRE(probe_call(client, name, 0, 5s).ok());
  Pending pending(client, name, 5, 2000);
  REQUIRE(await([&] { return p.running.load() == 5; }, 10s));
  const int errors_before = rabbit::count(rabbit::broker_log(), "no exchange 'tern.cancel'");
  tern::Result<probe::ProbeResponse> gave_up = tern::Error{};
  int errors_after = errors_before;
  {
    ExchangeDeleted gone("tern.cancel", "direct");
    // The caller gives up after 300 ms and publishes a cancel notice to the
    // deleted exchange: the broker closes the channel it went on.
    gave_up = probe_call(client, name, 5000, 300ms);
    await([&] { return (errors_after = rabbit::count(rabbit::broker_log(), "no exchange 'tern.cancel'")) > errors_before; },
          10s);
  }
  const int ok = pending.ok();
  std::printf("cancel notice to a deleted tern.cancel: the broker logged %d channel error(s); the call that gave up: "
              "%s; %d of 5 calls waiting meanwhile ok\n",
              errors_after - errors_before, gave_up.ok() ? "ok" : gave_up.error().to_string().c_str(), ok);
  CHECK(errors_after > errors_before);   // the broker really closed a channel for it
  CHECK(gave_up.code() == tern::Code::kDeadlineExceeded);
  INFO(pending.first_error());
  CHECK(ok == 5);
  CHECK(probe_call(client, name, 0, 5s).ok());
}
