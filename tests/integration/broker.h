// A plain rabbitmq-c connection for tests to look at the broker's side:
// declare and bind queues, publish raw bytes, get messages.
#pragma once

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tern/context.h"
#include "tern/options.h"
#include "tern/envelope.pb.h"
#include "tern/events.h"

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
    std::string name = "test.events." + tern::new_span_id();
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
    // As tern declares it: on a fresh broker no tern runtime may have yet.
    amqp_exchange_declare(conn_, 1, amqp_cstring_bytes(tern::kEventExchange), amqp_cstring_bytes("topic"),
                          0, /*durable=*/1, 0, 0, amqp_empty_table);
    REQUIRE(amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL);
    amqp_queue_bind(conn_, 1, amqp_cstring_bytes(name.c_str()), amqp_cstring_bytes(tern::kEventExchange),
                    amqp_cstring_bytes(key.c_str()), amqp_empty_table);
    REQUIRE(amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL);
    return name;
  }

  // The body of the next message in `queue`, if any (basic.get, auto-ack),
  // and its string headers.
  std::optional<std::string> get(const std::string& queue,
                                 std::map<std::string, std::string>* headers = nullptr) {
    amqp_rpc_reply_t r = amqp_basic_get(conn_, 1, amqp_cstring_bytes(queue.c_str()), 1);
    REQUIRE(r.reply_type == AMQP_RESPONSE_NORMAL);
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
    amqp_message_t msg;
    REQUIRE(amqp_read_message(conn_, 1, &msg, 0).reply_type == AMQP_RESPONSE_NORMAL);
    std::string body(static_cast<char*>(msg.body.bytes), msg.body.len);
    if (headers != nullptr && (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG)) {
      for (int i = 0; i < msg.properties.headers.num_entries; ++i) {
        const auto& e = msg.properties.headers.entries[i];
        if (e.value.kind != AMQP_FIELD_KIND_UTF8) continue;
        (*headers)[std::string(static_cast<char*>(e.key.bytes), e.key.len)] =
            std::string(static_cast<char*>(e.value.value.bytes.bytes), e.value.value.bytes.len);
      }
    }
    amqp_destroy_message(&msg);
    return body;
  }

  // Publishes raw bytes to `queue` on the default exchange.
  void publish(const std::string& queue, const std::string& body, const std::string& reply_to = "") {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = amqp_cstring_bytes("raw-1");
    if (!reply_to.empty()) {
      props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      props.reply_to = amqp_cstring_bytes(reply_to.c_str());
    }
    REQUIRE(amqp_basic_publish(conn_, 1, amqp_empty_bytes, amqp_cstring_bytes(queue.c_str()), 0, 0,
                               &props, amqp_bytes_t{body.size(), const_cast<char*>(body.data())}) ==
            AMQP_STATUS_OK);
  }

  // Waits up to `timeout` for a message in `queue`.
  std::optional<std::string> await(const std::string& queue, std::chrono::milliseconds timeout,
                                   std::map<std::string, std::string>* headers = nullptr) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (auto m = get(queue, headers)) return m;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

 private:
  amqp_connection_state_t conn_;
};

// Options for a test's services and clients: the broker scripts/test
// started, one thread.
inline tern::Options broker_options() {
  tern::Options o = tern::Options::from_env();
  if (std::getenv("TERN_AMQP_URL") == nullptr)
    FAIL("TERN_AMQP_URL is not set: run the integration tests through scripts/test");
  o.threads = 1;
  return o;
}

// TERN_AMQP_URL's login (the node's administrator) at another port of
// 127.0.0.1: a proxy's, a dead node's.
inline std::string broker_url_at(int port) {
  const char* url = std::getenv("TERN_AMQP_URL");
  if (url == nullptr) FAIL("TERN_AMQP_URL is not set: run the integration tests through scripts/test");
  const std::string s = url;
  return s.substr(0, s.find('@') + 1) + "127.0.0.1:" + std::to_string(port) + "/";
}

// A queue name of this test's own, so tests never see each other's requests.
inline std::string unique_service(const std::string& what) {
  return "test." + what + "." + tern::new_span_id();
}
