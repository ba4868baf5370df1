#include "broker_tools.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <optional>
#include <stdexcept>
#include <vector>

#include "tern/envelope.pb.h"
#include "tern/events.h"
#include "tern/json.h"

namespace tern::cli {
namespace {

std::string str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

// A plain connection with channel 1 open, to the first of `urls` that
// answers; throws with every node's reason.
class Conn {
 public:
  explicit Conn(const std::vector<std::string>& urls) {
    std::string errors;
    for (const std::string& url : urls) {
      try {
        open(url);
        return;
      } catch (const std::exception& e) {
        if (c_ != nullptr) amqp_destroy_connection(c_);
        c_ = nullptr;
        errors += (errors.empty() ? "" : "; ") + std::string(e.what());
      }
    }
    throw std::runtime_error(errors);
  }
  ~Conn() {
    amqp_channel_close(c_, channel_, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c_);
  }
  amqp_connection_state_t get() const { return c_; }
  amqp_channel_t channel() const { return channel_; }
  // After the broker closed the channel (a failed passive declare): says
  // close-ok and opens the next channel number.
  void reopen() {
    amqp_channel_close_ok_t ok{};
    amqp_send_method(c_, channel_, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    ++channel_;
    amqp_channel_open(c_, channel_);
    check(amqp_get_rpc_reply(c_), "channel.open");
  }
  static void check(const amqp_rpc_reply_t& r, const char* what) {
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      throw std::runtime_error(fmt::format("{}: {} {}", what, m->reply_code, str(m->reply_text)));
    }
    throw std::runtime_error(fmt::format("{} failed", what));
  }

 private:
  void open(const std::string& url) {
    std::vector<char> buf(url.begin(), url.end());
    buf.push_back('\0');
    amqp_connection_info info;
    if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) throw std::runtime_error("bad AMQP URL");
    if (info.vhost == nullptr || *info.vhost == '\0') info.vhost = const_cast<char*>("/");
    c_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(c_);
    if (amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK)
      throw std::runtime_error(fmt::format("cannot connect to {}:{}", info.host, info.port));
    check(amqp_login(c_, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password), "login");
    amqp_channel_open(c_, 1);
    check(amqp_get_rpc_reply(c_), "channel.open");
  }

  amqp_connection_state_t c_ = nullptr;
  amqp_channel_t channel_ = 1;
};

struct Got {
  uint64_t tag;
  std::string body;
  std::string error;
  std::string attempt;
};

// basic.get without auto-ack; nullopt when the queue is empty.
std::optional<Got> get(Conn& conn, const std::string& queue) {
  amqp_rpc_reply_t r = amqp_basic_get(conn.get(), 1, amqp_cstring_bytes(queue.c_str()), 0);
  Conn::check(r, "basic.get");
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
  Got g;
  g.tag = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded)->delivery_tag;
  amqp_message_t msg;
  Conn::check(amqp_read_message(conn.get(), 1, &msg, 0), "reading a message");
  g.body = str(msg.body);
  if (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
    for (int i = 0; i < msg.properties.headers.num_entries; ++i) {
      const auto& e = msg.properties.headers.entries[i];
      if (e.value.kind != AMQP_FIELD_KIND_UTF8) continue;
      if (str(e.key) == "x-tern-error") g.error = str(e.value.value.bytes);
      if (str(e.key) == "x-tern-attempt") g.attempt = str(e.value.value.bytes);
    }
  }
  amqp_destroy_message(&msg);
  return g;
}

// One JSON line for an event envelope (the body as base64: the CLI does not
// know every event type), plus what the dead-letter headers said.
std::string describe(const std::string& body, const std::string& error = {}) {
  v1::Event event;
  std::string json;
  if (!event.ParseFromString(body)) return R"({"error":"not a tern.v1.Event"})";
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(event, &json, options);
  if (!error.empty() && json.ends_with('}')) {
    json.pop_back();
    json += fmt::format(R"(,"dead_letter_error":{}}})", tern::json::quote(error));
  }
  return json;
}

}  // namespace

int tail_events(const std::vector<std::string>& urls, const std::string& pattern, std::optional<long> count,
                std::chrono::milliseconds duration) {
  Conn conn(urls);
  amqp_exchange_declare(conn.get(), 1, amqp_cstring_bytes(kEventExchange), amqp_cstring_bytes("topic"), 0, 1, 0,
                        0, amqp_empty_table);
  Conn::check(amqp_get_rpc_reply(conn.get()), "exchange.declare");
  auto* ok = amqp_queue_declare(conn.get(), 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
  Conn::check(amqp_get_rpc_reply(conn.get()), "queue.declare");
  const std::string queue = str(ok->queue);
  amqp_queue_bind(conn.get(), 1, amqp_cstring_bytes(queue.c_str()), amqp_cstring_bytes(kEventExchange),
                  amqp_cstring_bytes(pattern.c_str()), amqp_empty_table);
  Conn::check(amqp_get_rpc_reply(conn.get()), "queue.bind");
  amqp_basic_consume(conn.get(), 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
  Conn::check(amqp_get_rpc_reply(conn.get()), "basic.consume");
  fmt::print(stderr, "tail: events matching '{}' (Ctrl-C stops)\n", pattern);
  const auto until = std::chrono::steady_clock::now() + duration;
  long printed = 0;
  while (!count || printed < *count) {
    timeval tv{0, 200000};
    amqp_envelope_t envelope;
    amqp_maybe_release_buffers(conn.get());
    amqp_rpc_reply_t r = amqp_consume_message(conn.get(), &envelope, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      fmt::print("{}\n", describe(str(envelope.message.body)));
      std::fflush(stdout);
      amqp_destroy_envelope(&envelope);
      ++printed;
    } else if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)) {
      fmt::print(stderr, "tail: the connection failed\n");
      return 1;
    }
    if (duration.count() > 0 && std::chrono::steady_clock::now() >= until) break;
  }
  return 0;
}

std::vector<QueueState> probe_queues(const std::vector<std::string>& urls,
                                     const std::vector<std::string>& names) {
  Conn conn(urls);
  std::vector<QueueState> out;
  for (const std::string& name : names) {
    QueueState q{.name = name};
    auto* ok = amqp_queue_declare(conn.get(), conn.channel(), amqp_cstring_bytes(name.c_str()), /*passive=*/1,
                                  0, 0, 0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn.get());
    if (r.reply_type == AMQP_RESPONSE_NORMAL && ok != nullptr) {
      q.exists = true;
      q.messages = ok->message_count;
      q.consumers = ok->consumer_count;
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      // 404 NOT_FOUND: no such queue (403: this user may not see it).
      auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      if (m->reply_code != AMQP_NOT_FOUND) q.error = fmt::format("{} {}", m->reply_code, str(m->reply_text));
      conn.reopen();
    } else {
      throw std::runtime_error(fmt::format("queue.declare {} failed", name));
    }
    out.push_back(std::move(q));
  }
  return out;
}

int dlq_list(const std::vector<std::string>& urls, const std::string& subscription) {
  Conn conn(urls);
  const std::string queue = subscription + ".dead-letter";
  long n = 0;
  // Unacked gets, then the channel closes: the broker puts them all back.
  while (auto g = get(conn, queue)) {
    fmt::print("{}\n", describe(g->body, g->error));
    ++n;
  }
  fmt::print(stderr, "{}: {} event(s)\n", queue, n);
  return 0;
}

int dlq_replay(const std::vector<std::string>& urls, const std::string& subscription) {
  Conn conn(urls);
  const std::string queue = subscription + ".dead-letter";
  long n = 0;
  while (auto g = get(conn, queue)) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.content_type = amqp_cstring_bytes("application/x-protobuf");
    // Back to the subscription queue, its attempts counted afresh.
    if (amqp_basic_publish(conn.get(), 1, amqp_empty_bytes, amqp_cstring_bytes(subscription.c_str()), 0, 0,
                           &props, amqp_bytes_t{g->body.size(), g->body.data()}) != AMQP_STATUS_OK ||
        amqp_basic_ack(conn.get(), 1, g->tag, 0) != AMQP_STATUS_OK) {
      fmt::print(stderr, "replay: the connection failed after {} event(s)\n", n);
      return 1;
    }
    ++n;
  }
  fmt::print("replayed {} event(s) from {} to {}\n", n, queue, subscription);
  return 0;
}

}  // namespace tern::cli
