// Broker users on the node scripts/test started, made by the function the
// scripts make theirs with (rabbit_add_users, scripts/lib/broker_users.sh),
// and what the broker refuses them: guest cannot log in at all, and a
// service user may touch only its own queues, publish only its own events
// and only to the exchanges tern uses. Each refusal is the broker's own
// (a connection or channel closed with 403 ACCESS_REFUSED), next to the
// same user doing the permitted thing, so a refusal for another reason
// cannot pass for a permission.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "broker.h"
#include "rabbit_ctl.h"
#include "tern/tern.h"

using namespace std::chrono_literals;

namespace {

amqp_bytes_t bytes(const std::string& s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }

// One AMQP connection to scripts/test's node as `user`.
class Login {
 public:
  Login(const std::string& user, const std::string& password) {
    const char* url = std::getenv("TERN_AMQP_URL");
    REQUIRE(url != nullptr);
    std::vector<char> buf(url, url + std::strlen(url) + 1);
    amqp_connection_info info;
    REQUIRE(amqp_parse_url(buf.data(), &info) == AMQP_STATUS_OK);
    conn_ = amqp_new_connection();
    REQUIRE(amqp_socket_open(amqp_tcp_socket_new(conn_), info.host, info.port) == AMQP_STATUS_OK);
    login_ = amqp_login(conn_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, user.c_str(), password.c_str());
    if (ok()) open_channel();
  }
  ~Login() {
    if (ok()) amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }
  bool ok() const { return login_.reply_type == AMQP_RESPONSE_NORMAL; }
  // The code and text the broker closed the connection with at login.
  int login_code() const { return code_of(login_, AMQP_CONNECTION_CLOSE_METHOD); }
  std::string login_text() const { return text_; }

  // A synchronous method's outcome: 0 if the broker did it, else the code
  // it closed the channel with (its text in text()); a new channel then.
  int settle(amqp_rpc_reply_t r) {
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return 0;
    const int code = code_of(r, AMQP_CHANNEL_CLOSE_METHOD);
    REQUIRE(code != 0);
    amqp_channel_close_ok_t close_ok{};
    amqp_send_method(conn_, channel_, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
    ++channel_;
    open_channel();
    return code;
  }
  int declare_queue(const std::string& queue) {
    amqp_queue_declare(conn_, channel_, bytes(queue), 0, 0, 0, 0, amqp_empty_table);
    return settle(amqp_get_rpc_reply(conn_));
  }
  int declare_exchange(const std::string& exchange) {
    amqp_exchange_declare(conn_, channel_, bytes(exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    return settle(amqp_get_rpc_reply(conn_));
  }
  int delete_queue(const std::string& queue) {
    amqp_queue_delete(conn_, channel_, bytes(queue), 0, 0);
    return settle(amqp_get_rpc_reply(conn_));
  }
  int bind(const std::string& queue, const std::string& exchange, const std::string& key) {
    amqp_queue_bind(conn_, channel_, bytes(queue), bytes(exchange), bytes(key), amqp_empty_table);
    return settle(amqp_get_rpc_reply(conn_));
  }
  // A server-named queue of this connection's own; its name.
  std::string private_queue() {
    auto* ok = amqp_queue_declare(conn_, channel_, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    REQUIRE(settle(amqp_get_rpc_reply(conn_)) == 0);
    return std::string(static_cast<char*>(ok->queue.bytes), ok->queue.len);
  }
  int consume(const std::string& queue) {
    amqp_basic_consume(conn_, channel_, bytes(queue), amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    return settle(amqp_get_rpc_reply(conn_));
  }
  // basic.publish is asynchronous: a basic.qos after it hears whether the
  // broker closed the channel for it.
  int publish(const std::string& exchange, const std::string& key, const std::string& body = "x") {
    REQUIRE(amqp_basic_publish(conn_, channel_, bytes(exchange), bytes(key), 0, 0, nullptr, bytes(body)) ==
            AMQP_STATUS_OK);
    amqp_basic_qos(conn_, channel_, 0, 1, 0);
    return settle(amqp_get_rpc_reply(conn_));
  }
  const std::string& text() const { return text_; }

 private:
  void open_channel() {
    amqp_channel_open(conn_, channel_);
    REQUIRE(amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL);
  }
  int code_of(const amqp_rpc_reply_t& r, amqp_method_number_t method) const {
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != method) return 0;
    if (method == AMQP_CHANNEL_CLOSE_METHOD) {
      auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      text_.assign(static_cast<char*>(m->reply_text.bytes), m->reply_text.len);
      return m->reply_code;
    }
    auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
    text_.assign(static_cast<char*>(m->reply_text.bytes), m->reply_text.len);
    return m->reply_code;
  }

  amqp_connection_state_t conn_;
  amqp_rpc_reply_t login_{};
  amqp_channel_t channel_ = 1;
  mutable std::string text_;
};

// Service users of this test's own (service.perm<hex>, so their events'
// package is perm<hex>), made by rabbit_add_users; deleted at the end.
struct ServiceUsers {
  explicit ServiceUsers(int n) {
    std::vector<std::string> specs;
    for (int i = 0; i < n; ++i) {
      names.push_back("service.perm" + tern::new_span_id().substr(0, 10));
      specs.push_back("service:" + names.back());
    }
    for (const std::string& file : rabbit::add_users(specs)) passwords.push_back(rabbit::password(file));
  }
  ~ServiceUsers() {
    for (const std::string& name : names) rabbit::ctl("delete_user " + name);
  }
  std::string package(int i) const { return names[i].substr(std::strlen("service.")); }
  std::vector<std::string> names, passwords;
};

}  // namespace

TEST_CASE("guest cannot log in to scripts/test's node: ACCESS_REFUSED") {
  Login guest("guest", "guest");
  CHECK_FALSE(guest.ok());
  CHECK(guest.login_code() == 403);
  CHECK(guest.login_text().starts_with("ACCESS_REFUSED"));
  // The broker's own list of users has none called guest.
  CHECK(("\n" + rabbit::output("list_users")).find("\nguest\t") == std::string::npos);
  // The administrator the tests use, from TERN_AMQP_URL, can.
  Inspector admin;
}

TEST_CASE("a service user may not consume another service's queue, but can put a message in it by name") {
  ServiceUsers users(2);
  Login a(users.names[0], users.passwords[0]), b(users.names[1], users.passwords[1]);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  // Each declares its own request queue, as its service would, and may consume it.
  REQUIRE(b.declare_queue(users.names[1]) == 0);
  REQUIRE(a.declare_queue(users.names[0]) == 0);
  CHECK(a.consume(users.names[0]) == 0);
  // Not b's: the broker closes the channel.
  CHECK(a.consume(users.names[1]) == 403);
  CHECK(a.text().starts_with("ACCESS_REFUSED"));
  CHECK(a.text().find(users.names[1]) != std::string::npos);
  // Nor declare (configure) one of b's queues.
  CHECK(a.declare_queue(users.names[1] + ".dead-letter") == 403);
  // The default exchange takes a message to any queue by its name: what
  // verified callers (ctx.caller()) are for.
  CHECK(a.publish("", users.names[1], "a request") == 0);
  for (auto until = std::chrono::steady_clock::now() + 10s;
       rabbit::queue_field(users.names[1], "messages") != "1" && std::chrono::steady_clock::now() < until;)
    std::this_thread::sleep_for(50ms);
  CHECK(rabbit::queue_field(users.names[1], "messages") == "1");
  CHECK(b.delete_queue(users.names[1]) == 0);
  CHECK(a.delete_queue(users.names[0]) == 0);
}

TEST_CASE("a service user may publish events only under its own package's routing keys") {
  ServiceUsers users(1);
  Login a(users.names[0], users.passwords[0]);
  REQUIRE(a.ok());
  REQUIRE(a.declare_exchange(tern::kEventExchange) == 0);   // as every tern process does
  Inspector admin;
  const std::string own = admin.bind(users.package(0) + ".created");
  const std::string other = admin.bind("transaction.created");
  CHECK(a.publish(tern::kEventExchange, users.package(0) + ".created", "its own") == 0);
  CHECK(admin.await(own, 10s) == "its own");
  // Another service's event: refused by the broker's topic permission.
  CHECK(a.publish(tern::kEventExchange, "transaction.created", "forged") == 403);
  CHECK(a.text().starts_with("ACCESS_REFUSED"));
  CHECK(a.text().find("transaction.created") != std::string::npos);
  // A key that merely starts with its package's name is another package.
  CHECK(a.publish(tern::kEventExchange, users.package(0) + "x.created", "forged") == 403);
  CHECK_FALSE(admin.get(other).has_value());
  // It may bind any pattern: subscribing is not limited by package.
  const std::string mine = a.private_queue();
  CHECK(a.bind(mine, tern::kEventExchange, "transaction.created") == 0);
}

TEST_CASE("a service user may not publish to an exchange it has no write permission on") {
  ServiceUsers users(1);
  Login a(users.names[0], users.passwords[0]);
  REQUIRE(a.ok());
  REQUIRE(a.declare_exchange(tern::kTraceExchange) == 0);
  CHECK(a.publish(tern::kTraceExchange, "tern.v1.span_batch") == 0);   // spans: allowed
  CHECK(a.publish("amq.topic", "anything") == 403);
  CHECK(a.text().starts_with("ACCESS_REFUSED"));
  CHECK(a.text().find("amq.topic") != std::string::npos);
  CHECK(a.publish("amq.direct", "anything") == 403);
  // Nor read tern.traces, every request's spans: only service.trace may
  // (its services/trace/broker.conf).
  const std::string mine = a.private_queue();
  CHECK(a.bind(mine, tern::kTraceExchange, "#") == 403);
  CHECK(a.text().find("tern.traces") != std::string::npos);
}

TEST_CASE("a login the broker refuses fails with an error that shows no password") {
  tern::Options o = broker_options();
  o.amqp_user = "service.nobody";
  o.amqp_password = "not-the-password-" + tern::new_span_id();
  std::string what;
  try {
    tern::Client client(o);
  } catch (const std::exception& e) {
    what = e.what();
  }
  CHECK(what.find("ACCESS_REFUSED") != std::string::npos);
  CHECK(what.find(o.amqp_password) == std::string::npos);
  CHECK(what.find("amqp://") == std::string::npos);   // nor any URL
}
