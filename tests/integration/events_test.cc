// Publishing events with confirms, checked from the broker's side with plain
// rabbitmq-c (tern has no subscriber API yet).
#include <catch2/catch.hpp>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <cstring>
#include <optional>
#include <vector>

#include <boost/fiber/all.hpp>

#include "probe.pb.h"
#include "tern/envelope.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;

namespace {

// A raw AMQP connection for inspecting the broker.
class Inspector {
 public:
  Inspector() {
    const char* url = std::getenv("TERN_AMQP_URL");
    REQUIRE(url != nullptr);
    std::vector<char> buf(url, url + std::strlen(url) + 1);
    amqp_connection_info info;
    REQUIRE(amqp_parse_url(buf.data(), &info) == AMQP_STATUS_OK);
    conn_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
    REQUIRE(amqp_socket_open(socket, info.host, info.port) == AMQP_STATUS_OK);
    REQUIRE(amqp_login(conn_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password)
                .reply_type == AMQP_RESPONSE_NORMAL);
    amqp_channel_open(conn_, 1);
    REQUIRE(amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL);
  }
  ~Inspector() {
    amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }

  // A fresh queue bound to tern.events with `key`, optionally holding at
  // most `max_length` messages and refusing publishes beyond that.
  std::string bind(const std::string& key, int max_length = -1) {
    std::string name = "test.events." + tern::detail::new_span_id();
    amqp_table_entry_t entries[2];
    amqp_table_t args{0, entries};
    if (max_length >= 0) {
      entries[0].key = amqp_cstring_bytes("x-max-length");
      entries[0].value.kind = AMQP_FIELD_KIND_I32;
      entries[0].value.value.i32 = max_length;
      entries[1].key = amqp_cstring_bytes("x-overflow");
      entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[1].value.value.bytes = amqp_cstring_bytes("reject-publish");
      args.num_entries = 2;
    }
    // Exclusive: gone with this connection, so no later test routes to it.
    amqp_queue_declare(conn_, 1, amqp_cstring_bytes(name.c_str()), 0, 0, /*exclusive=*/1, 1, args);
    REQUIRE(amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL);
    amqp_queue_bind(conn_, 1, amqp_cstring_bytes(name.c_str()), amqp_cstring_bytes(tern::kEventExchange),
                    amqp_cstring_bytes(key.c_str()), amqp_empty_table);
    REQUIRE(amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL);
    return name;
  }

  // The body of the next message in `queue`, if any (basic.get, auto-ack).
  std::optional<std::string> get(const std::string& queue) {
    amqp_rpc_reply_t r = amqp_basic_get(conn_, 1, amqp_cstring_bytes(queue.c_str()), 1);
    REQUIRE(r.reply_type == AMQP_RESPONSE_NORMAL);
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
    amqp_message_t msg;
    REQUIRE(amqp_read_message(conn_, 1, &msg, 0).reply_type == AMQP_RESPONSE_NORMAL);
    std::string body(static_cast<char*>(msg.body.bytes), msg.body.len);
    amqp_destroy_message(&msg);
    return body;
  }

 private:
  amqp_connection_state_t conn_;
};

}  // namespace

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
