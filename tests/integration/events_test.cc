// Publishing events with confirms, checked from the broker's side with plain
// rabbitmq-c (tern has no subscriber API yet).
#include <catch2/catch.hpp>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <sqlite3.h>
#include <sys/wait.h>

#include <cstring>
#include <optional>
#include <vector>

#include <boost/fiber/all.hpp>

#include "broker.h"
#include "probe.pb.h"
#include "tern/envelope.pb.h"
#include "tern/outbox.h"
#include "tern/tern.h"

using namespace std::chrono_literals;


TEST_CASE("an event's routing key is its package and snake_case name") {
  CHECK(tern::event_routing_key(probe::ProbeRequest::descriptor()) == "probe.probe_request");
  CHECK(tern::event_routing_key(tern::v1::Event::descriptor()) == "tern.v1.event");
}

TEST_CASE("a published event is confirmed and stored with its envelope") {
  Inspector broker;
  const std::string queue = broker.bind("probe.hop");
  tern::Client client;
  auto ctx = tern::Context::with_timeout(5s);
  ctx.set_metadata("user", "ada");
  probe::Hop hop;
  hop.set_service("published");
  tern::Error e = client.run([&] { return tern::publish(ctx, hop); });
  INFO(e.to_string());
  REQUIRE(e.ok());
  auto body = broker.get(queue);
  REQUIRE(body.has_value());
  tern::v1::Event event;
  REQUIRE(event.ParseFromString(*body));
  CHECK(event.type() == "probe.Hop");
  CHECK(event.source() == "tern.client");
  CHECK(event.id().size() == 32);
  CHECK(event.trace_id() == ctx.trace_id());
  CHECK(event.metadata().at("user") == "ada");
  probe::Hop back;
  REQUIRE(back.ParseFromString(event.body()));
  CHECK(back.service() == "published");
  CHECK_FALSE(broker.get(queue).has_value());
}

TEST_CASE("a publish the broker refuses is reported as failed with an unknown outcome") {
  Inspector broker;
  const std::string queue = broker.bind("probe.hop", /*max_length=*/1);  // room for one
  tern::Client client;
  auto ctx = tern::Context::with_timeout(5s);
  probe::Hop hop;
  tern::Error first = client.run([&] { return tern::publish(ctx, hop); });
  tern::Error second = client.run([&] { return tern::publish(ctx, hop); });
  CHECK(first.ok());
  REQUIRE_FALSE(second.ok());
  CHECK(second.code == tern::Code::kUnavailable);
  CHECK(second.params.at("outcome") == "unknown");
}

TEST_CASE("many fibers publish at once and every publish is confirmed") {
  Inspector broker;
  const std::string queue = broker.bind("probe.probe_request");
  tern::Client client;
  int ok = 0;
  client.run([&] {
    std::vector<boost::fibers::fiber> fibers;
    for (int f = 0; f < 50; ++f) {
      fibers.emplace_back([&] {
        for (int i = 0; i < 20; ++i) {
          auto ctx = tern::Context::with_timeout(10s);
          if (tern::publish(ctx, probe::ProbeRequest{}).ok()) ++ok;
        }
      });
    }
    for (auto& f : fibers) f.join();
  });
  CHECK(ok == 1000);
  int stored = 0;
  while (broker.get(queue)) ++stored;
  CHECK(stored == 1000);
}

TEST_CASE("an outbox event committed by a process that crashed before publishing is published on restart") {
  Inspector broker;
  const std::string queue = broker.bind("probe.hop");
  const std::string marker = tern::new_trace_id();
  char dir[] = "/tmp/tern-outbox.XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  const std::string db = std::string(dir) + "/service.db";
  const std::string tool = TERN_OUTBOX_TOOL;
  int status = std::system(("OUTBOX_MARKER=" + marker + " " + tool + " " + db + " commit-and-crash").c_str());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 9);   // it died after the commit...
  CHECK_FALSE(broker.get(queue).has_value());  // ...with nothing published
  auto run_relay = [&] {
    std::string out;
    FILE* p = popen((tool + " " + db + " relay").c_str(), "r");
    char buf[64];
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    if (p) pclose(p);
    return out;
  };
  CHECK(run_relay() == "1\n");  // the restarted process publishes it
  auto body = broker.await(queue, std::chrono::seconds(5));
  REQUIRE(body.has_value());
  tern::v1::Event event;
  REQUIRE(event.ParseFromString(*body));
  probe::Hop hop;
  REQUIRE(hop.ParseFromString(event.body()));
  CHECK(hop.service() == marker);
  CHECK(run_relay() == "0\n");  // marked sent: not again
  CHECK_FALSE(broker.get(queue).has_value());
  std::system((std::string("rm -rf ") + dir).c_str());
}

TEST_CASE("an outbox transaction that fails keeps neither its rows nor its events") {
  char dir[] = "/tmp/tern-outbox.XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  tern::Outbox outbox(std::string(dir) + "/service.db");
  auto ctx = tern::Context::with_timeout(std::chrono::seconds(5));
  CHECK_FALSE(outbox.transaction([&] {
    outbox.add(ctx, probe::Hop{});
    return false;
  }));
  CHECK_THROWS(outbox.transaction([&]() -> bool {
    outbox.add(ctx, probe::Hop{});
    throw std::runtime_error("business rule");
  }));
  CHECK(outbox.pending() == 0);
  CHECK(outbox.transaction([&] {
    outbox.add(ctx, probe::Hop{});
    return true;
  }));
  CHECK(outbox.pending() == 1);
  std::system((std::string("rm -rf ") + dir).c_str());
}

TEST_CASE("an outbox event relayed again after a crash carries the same event id, and sent rows are pruned") {
  Inspector broker;
  const std::string queue = broker.bind("probe.hop");
  const std::string marker = tern::new_trace_id();
  char dir[] = "/tmp/tern-outbox.XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  tern::Outbox outbox(std::string(dir) + "/service.db");
  auto ctx = tern::Context::with_timeout(std::chrono::seconds(5));
  REQUIRE(outbox.transaction([&] {
    probe::Hop hop;
    hop.set_service(marker);
    outbox.add(ctx, hop);
    return true;
  }));
  // A crash after the confirm and before the row is dropped means the same
  // row is relayed twice: a second copy of the row stands in for it.
  REQUIRE(sqlite3_exec(outbox.db(),
                       "INSERT INTO tern_outbox (type, routing_key, body, trace_id, span_id, created_unix_ms, event_id)"
                       " SELECT type, routing_key, body, trace_id, span_id, created_unix_ms, event_id FROM tern_outbox",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(outbox.pending() == 2);
  tern::Client client(broker_options());
  CHECK(client.run([&] { return outbox.relay(tern::Context::with_timeout(std::chrono::seconds(10))); }) == 2);
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    auto body = broker.await(queue, std::chrono::seconds(5));
    REQUIRE(body.has_value());
    tern::v1::Event event;
    REQUIRE(event.ParseFromString(*body));
    probe::Hop hop;
    REQUIRE(hop.ParseFromString(event.body()));
    CHECK(hop.service() == marker);
    ids.push_back(event.id());
  }
  CHECK(ids[0].size() == 32);
  CHECK(ids[0] == ids[1]);   // the subscriber can tell the repeat
  // Confirmed rows are gone, not kept forever.
  sqlite3_stmt* count = nullptr;
  REQUIRE(sqlite3_prepare_v2(outbox.db(), "SELECT COUNT(*) FROM tern_outbox", -1, &count, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(count) == SQLITE_ROW);
  CHECK(sqlite3_column_int(count, 0) == 0);
  sqlite3_finalize(count);
  std::system((std::string("rm -rf ") + dir).c_str());
}
