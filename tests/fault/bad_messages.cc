#include "bad_messages.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <fmt/format.h>
#include <sys/time.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "tern/context.h"
#include "tern/envelope.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr amqp_channel_t kChannel = 1;

std::string str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

// rabbitmq-c's RPC result, as a failure description; empty if it succeeded.
std::string rpc_failure(const amqp_rpc_reply_t& r, const char* what) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return {};
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return fmt::format("{}: {}", what, amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      return fmt::format("{}: the broker closed the channel or connection (method {:#x})", what, r.reply.id);
    default:
      return fmt::format("{}: no reply", what);
  }
}

std::string header(const amqp_basic_properties_t& p, const char* key) {
  if ((p._flags & AMQP_BASIC_HEADERS_FLAG) == 0) return {};
  for (int i = 0; i < p.headers.num_entries; ++i) {
    const amqp_table_entry_t& e = p.headers.entries[i];
    if (str(e.key) == key && (e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES))
      return str(e.value.value.bytes);
  }
  return {};
}

class Raw {
 public:
  Raw() : conn_(amqp_new_connection()) {}
  ~Raw() {
    if (open_) {
      amqp_channel_close(conn_, kChannel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn_);
  }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  // Empty on success, else what failed.
  std::string open(const char* url) {
    std::vector<char> buf(url, url + std::strlen(url) + 1);
    amqp_connection_info info;
    amqp_default_connection_info(&info);
    if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) return "amqp_parse_url";
    // "amqp://host:port/" names the empty vhost; take it as "/", as tern does.
    if (info.vhost == nullptr || *info.vhost == '\0') info.vhost = const_cast<char*>("/");
    timeval rpc_timeout{10, 0};  // bounds every synchronous call below
    if (amqp_set_rpc_timeout(conn_, &rpc_timeout) != AMQP_STATUS_OK) return "amqp_set_rpc_timeout";
    amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
    if (socket == nullptr) return "amqp_tcp_socket_new";
    timeval connect_timeout{10, 0};
    if (int rc = amqp_socket_open_noblock(socket, info.host, info.port, &connect_timeout); rc != AMQP_STATUS_OK)
      return fmt::format("amqp_socket_open: {}", amqp_error_string2(rc));
    if (auto f = rpc_failure(amqp_login(conn_, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                                        info.password),
                             "amqp_login");
        !f.empty())
      return f;
    amqp_channel_open(conn_, kChannel);
    if (auto f = rpc_failure(amqp_get_rpc_reply(conn_), "amqp_channel_open"); !f.empty()) return f;
    open_ = true;
    amqp_confirm_select(conn_, kChannel);
    return rpc_failure(amqp_get_rpc_reply(conn_), "amqp_confirm_select");
  }

  // A queue of our own for the service's answers; its name, or empty.
  std::string reply_queue(std::string* failure) {
    amqp_queue_declare_ok_t* ok =
        amqp_queue_declare(conn_, kChannel, amqp_empty_bytes, 0, 0, /*exclusive=*/1, 1, amqp_empty_table);
    *failure = rpc_failure(amqp_get_rpc_reply(conn_), "amqp_queue_declare");
    return ok != nullptr && failure->empty() ? str(ok->queue) : std::string();
  }

  std::string publish(const std::string& queue, const std::string& body, const std::string& correlation_id,
                      const std::string& reply_to) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = amqp_cstring_bytes(correlation_id.c_str());
    if (!reply_to.empty()) {
      props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      props.reply_to = amqp_cstring_bytes(reply_to.c_str());
    }
    const int rc = amqp_basic_publish(conn_, kChannel, amqp_empty_bytes, amqp_cstring_bytes(queue.c_str()),
                                      /*mandatory=*/1, 0, &props,
                                      amqp_bytes_t{body.size(), const_cast<char*>(body.data())});
    if (rc != AMQP_STATUS_OK) return fmt::format("amqp_basic_publish: {}", amqp_error_string2(rc));
    ++published_;
    return {};
  }

  // Reads frames until every publish is acked or nacked, or `until`.
  std::string await_confirms(Clock::time_point until, BadMessages* out) {
    uint64_t settled = 0;  // delivery tags 1..settled are acked or nacked
    while (settled < published_) {
      const auto left = std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now());
      if (left.count() <= 0) return fmt::format("{} of {} publishes unconfirmed", published_ - settled, published_);
      timeval tv{static_cast<time_t>(left.count() / 1000000), static_cast<suseconds_t>(left.count() % 1000000)};
      amqp_frame_t frame;
      const int rc = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
      if (rc == AMQP_STATUS_TIMEOUT) continue;
      if (rc != AMQP_STATUS_OK) return fmt::format("amqp_simple_wait_frame_noblock: {}", amqp_error_string2(rc));
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;  // a returned message's header and body
      const amqp_method_number_t id = frame.payload.method.id;
      if (id == AMQP_BASIC_RETURN_METHOD) {
        ++out->returned;
      } else if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
        const bool ack = id == AMQP_BASIC_ACK_METHOD;
        uint64_t tag = 0;
        bool multiple = false;
        if (ack) {
          auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          tag = a->delivery_tag, multiple = a->multiple;
        } else {
          auto* n = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          tag = n->delivery_tag, multiple = n->multiple;
        }
        const uint64_t n = multiple ? tag - std::min(tag, settled) : 1;
        if (ack) out->confirmed += static_cast<int>(n);
        settled = std::max(settled, tag);
      } else {
        return fmt::format("unexpected method {:#x} while awaiting confirms", id);
      }
    }
    return {};
  }

  // One message from `queue` (basic.get, no ack needed): false if none.
  bool get(const std::string& queue, std::string* body, std::string* correlation_id, std::string* failure) {
    amqp_maybe_release_buffers(conn_);
    amqp_rpc_reply_t r = amqp_basic_get(conn_, kChannel, amqp_cstring_bytes(queue.c_str()), /*no_ack=*/1);
    if (*failure = rpc_failure(r, "amqp_basic_get"); !failure->empty()) return false;
    if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) return false;  // get-empty
    amqp_message_t m;
    if (*failure = rpc_failure(amqp_read_message(conn_, kChannel, &m, 0), "amqp_read_message"); !failure->empty())
      return false;
    *body = str(m.body);
    const std::string original = header(m.properties, "x-tern-correlation-id");
    *correlation_id = !original.empty() ? original
                      : (m.properties._flags & AMQP_BASIC_CORRELATION_ID_FLAG) ? str(m.properties.correlation_id)
                                                                                : std::string();
    amqp_destroy_message(&m);
    return true;
  }

 private:
  amqp_connection_state_t conn_;
  bool open_ = false;
  uint64_t published_ = 0;
};

}  // namespace

std::string BadMessages::to_string() const {
  return fmt::format("{}/{} bad messages confirmed ({} returned), {}/{} answered INVALID_ARGUMENT, {}/{} "
                     "dead-lettered{}",
                     confirmed, kPublished, returned, answers, kExpectedAnswers, dead_letters,
                     kExpectedDeadLetters, failure.empty() ? "" : "; failed: " + failure);
}

BadMessages send_bad_messages(const std::string& service, std::chrono::milliseconds limit) {
  BadMessages out;
  const auto until = Clock::now() + limit;
  Raw raw;
  const char* url = std::getenv("TERN_AMQP_URL");
  if (url == nullptr) {
    out.failure = "no TERN_AMQP_URL";
    return out;
  }
  if (out.failure = raw.open(url); !out.failure.empty()) return out;
  const std::string replies = raw.reply_queue(&out.failure);
  if (!out.failure.empty()) return out;

  tern::v1::Request wrong;  // a valid envelope whose body is not a ProbeRequest
  wrong.set_endpoint("work");
  wrong.set_body(std::string("\xff\xff\xff", 3));
  wrong.set_deadline_unix_ms(tern::to_unix_ms(Clock::now() + std::chrono::seconds(10)));
  std::set<std::string> answerable, dead;  // correlation ids expected in each place
  for (int i = 0; i < BadMessages::kRounds && out.failure.empty(); ++i) {
    const std::string n = std::to_string(i);
    wrong.set_id("bad-wrong-" + n);
    const struct {
      std::string id, body;
      bool reply_to, answered, dead_lettered;
    } messages[] = {
        {"bad-garbage-" + n, "\xff garbage", true, true, true},
        {"bad-no-reply-to-" + n, "no reply_to", false, false, true},
        {"bad-oversized-" + n, std::string(5 << 20, 'x'), true, true, false},  // over the 4 MiB limit
        {"bad-wrong-" + n, wrong.SerializeAsString(), true, true, true},
    };
    for (const auto& m : messages) {
      if (m.answered) answerable.insert(m.id);
      if (m.dead_lettered) dead.insert(m.id);
      out.failure = raw.publish(service, m.body, m.id, m.reply_to ? replies : std::string());
      if (!out.failure.empty()) break;
    }
  }
  if (!out.failure.empty()) return out;
  if (out.failure = raw.await_confirms(until, &out); !out.failure.empty()) return out;

  // The answers and the dead letters arrive as the service gets to them.
  const std::string dead_letter_queue = service + ".dead-letter";
  const auto all_in = [&] {
    return out.answers == BadMessages::kExpectedAnswers && out.dead_letters == BadMessages::kExpectedDeadLetters;
  };
  while (!all_in() && Clock::now() < until) {
    std::string body, id;
    bool got = false;
    while (raw.get(replies, &body, &id, &out.failure)) {
      got = true;
      tern::v1::Response r;
      if (answerable.erase(id) && r.ParseFromString(body) && r.has_error() &&
          r.error().code() == tern::v1::INVALID_ARGUMENT)
        ++out.answers;
    }
    while (out.failure.empty() && raw.get(dead_letter_queue, &body, &id, &out.failure)) {
      got = true;
      out.dead_letters += static_cast<int>(dead.erase(id));
    }
    if (!out.failure.empty()) return out;
    if (!got) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return out;
}
