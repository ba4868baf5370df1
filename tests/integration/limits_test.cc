// What one message can do to a connection: nothing. Names too long for AMQP
// are refused alone with a typed error, and a long note on a message (an
// error text in a dead letter's header) is cut to fit rather than dropping
// the connection and the message with it.
#include <catch2/catch.hpp>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <future>
#include <map>
#include <string>

#include "broker.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;
using probe::ProbeRequest;
using probe::ProbeResponse;

TEST_CASE("a call to a service name over 255 bytes is INVALID_ARGUMENT and calls in flight beside it finish") {
  const std::string name = unique_service("limits");
  tern::Service svc(name);
  std::atomic<bool> running{false};
  svc.handle("probe", [&](tern::Context&, const ProbeRequest& req) -> tern::Result<ProbeResponse> {
    if (req.sleep_ms() > 0) running = true;
    boost::this_fiber::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
    return ProbeResponse{};
  });
  svc.start(broker_options());
  tern::Client client(broker_options());
  auto slow = std::async(std::launch::async, [&] {
    ProbeRequest req;
    req.set_sleep_ms(500);
    return client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", req).code();
  });
  // The slow call is in flight (its handler runs) before the bad one goes.
  for (auto until = std::chrono::steady_clock::now() + 5s; !running && std::chrono::steady_clock::now() < until;)
    std::this_thread::yield();
  REQUIRE(running);
  const std::string long_name(300, 's');
  auto bad = client.call<ProbeResponse>(tern::Context::with_timeout(5s), long_name, "probe", ProbeRequest{});
  CHECK(bad.code() == tern::Code::kInvalidArgument);
  CHECK(bad.error().message.find("300 bytes") != std::string::npos);
  auto bad_endpoint = client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, std::string(256, 'e'),
                                                 ProbeRequest{});
  CHECK(bad_endpoint.code() == tern::Code::kInvalidArgument);
  CHECK(slow.get() == tern::Code::kOk);
  CHECK(client.call<ProbeResponse>(tern::Context::with_timeout(5s), name, "probe", ProbeRequest{}).ok());
}

TEST_CASE("an event dead-lettered with a 5,000-byte error keeps its body and gets the error cut to 1 KiB") {
  const std::string name = unique_service("limits");
  std::atomic<int> runs{0};
  tern::Service svc(name);
  svc.subscribe<probe::Hop>("probe.hop", [&](tern::Context&, const probe::Hop&) -> tern::Error {
    runs.fetch_add(1);
    return tern::Error{tern::Code::kInvalidArgument, "no: " + std::string(5000, 'x')};
  });
  tern::Options o = broker_options();
  o.event_attempts = 2;   // a retry copy, then the dead letter: both carry the long error
  o.event_retry_ms = 50;
  svc.start(o);
  const std::string marker = "limits-" + tern::new_span_id();
  tern::Client client(broker_options());
  client.run([&] {
    probe::Hop hop;
    hop.set_service(marker);
    REQUIRE(tern::publish(tern::Context::with_timeout(5s), hop).ok());
  });
  Inspector broker;
  std::map<std::string, std::string> headers;
  auto dead = broker.await(name + ".on.probe.hop.dead-letter", 10s, &headers);
  REQUIRE(dead.has_value());
  CHECK(dead->find(marker) != std::string::npos);
  CHECK(headers["x-tern-error"].rfind("INVALID_ARGUMENT", 0) == 0);
  CHECK(headers["x-tern-error"].size() <= 1024);
  CHECK(runs.load() == 2);
  // The service's connections outlived it: it still handles events.
  client.run([&] { REQUIRE(tern::publish(tern::Context::with_timeout(5s), probe::Hop{}).ok()); });
  CHECK(broker.await(name + ".on.probe.hop.dead-letter", 10s).has_value());
}
