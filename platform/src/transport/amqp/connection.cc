// Connecting and logging in, the synchronous set-up exchange (one method,
// then its reply), heartbeats and closing. tern writes and reads every byte
// of the connection itself, through BrokerSocket (TCP, or TLS for
// amqps://); rabbitmq-c encodes and decodes the set-up's frames
// (amqp_encode_method, amqp_handle_input) and never touches the socket.
// The message path's frames are codec.h's.
#include "transport/amqp/connection.h"

#include <fmt/format.h>

#include <cstring>

#include "tern/log.h"

namespace tern::detail {
namespace {

using Clock = std::chrono::steady_clock;
// Bounds every synchronous method (set-up, close) so none can hang.
constexpr auto kRpcTimeout = std::chrono::seconds(10);
constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kCloseTimeout = std::chrono::seconds(2);
constexpr uint32_t kFrameMax = 131072;

amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
std::string str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }
uint32_t get32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

amqp_table_entry_t entry(const char* key, std::string_view value) {
  amqp_table_entry_t e;
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes(value);
  return e;
}

bool offers(std::string_view mechanisms, std::string_view m) {
  size_t at = 0;
  while (at <= mechanisms.size()) {
    const size_t end = std::min(mechanisms.find(' ', at), mechanisms.size());
    if (mechanisms.substr(at, end - at) == m) return true;
    at = end + 1;
  }
  return false;
}

}  // namespace

// A field added to Message must be reset and swapped below too.
static_assert(sizeof(Message) == 304, "Message changed: update reset() and swap()");
void Message::reset() {
  returned = false;
  delivery_tag = 0;
  redelivered = false;
  for (std::string* s : {&consumer_tag, &routing_key, &reply_text, &correlation_id, &reply_to, &user_id, &body})
    s->clear();
  reply_code = 0;
  body_size = 0;
  deliveries = 1;
  headers.clear();
  generation = 0;
}

void Message::swap(Message& o) noexcept {
  using std::swap;
  swap(returned, o.returned);
  swap(delivery_tag, o.delivery_tag);
  swap(redelivered, o.redelivered);
  consumer_tag.swap(o.consumer_tag);
  routing_key.swap(o.routing_key);
  swap(reply_code, o.reply_code);
  reply_text.swap(o.reply_text);
  correlation_id.swap(o.correlation_id);
  reply_to.swap(o.reply_to);
  user_id.swap(o.user_id);
  body.swap(o.body);
  swap(body_size, o.body_size);
  swap(deliveries, o.deliveries);
  headers.swap(o.headers);
  swap(generation, o.generation);
}

AmqpConnection::AmqpConnection(const std::string& url, int heartbeat_s, const std::string& connection_name) {
  const BrokerUrl u = BrokerUrl::parse(url);
  conn_ = amqp_new_connection();
  if (conn_ == nullptr) throw AmqpError("out of memory");
  init_amqp_pool(&pool_, 4096);
  // rabbitmq-c's decoder starts out expecting the protocol header a broker
  // sends only to refuse our version; after one it expects frames. Give it
  // one: its first-frame path is then never taken.
  amqp_frame_t f;
  static const char kHeader[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
  amqp_handle_input(conn_, amqp_bytes_t{sizeof kHeader, const_cast<char*>(kHeader)}, &f);
  try {
    socket_ = std::make_unique<BrokerSocket>(u, Clock::now() + kConnectTimeout);
    login(u, heartbeat_s, connection_name);
    amqp_channel_open_t open{};
    rpc(kChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "cannot open a channel");
  } catch (...) {
    socket_.reset();
    amqp_destroy_connection(conn_);
    empty_amqp_pool(&pool_);
    conn_ = nullptr;
    throw;
  }
}

void AmqpConnection::login(const BrokerUrl& u, int heartbeat_s, const std::string& connection_name) {
  const std::string where = fmt::format("cannot log in to {}:{}", u.host, u.port);
  out_.append("AMQP\x00\x00\x09\x01", 8);
  const amqp_frame_t start = await(0, AMQP_CONNECTION_START_METHOD, Clock::now() + kRpcTimeout, where);
  const std::string mechanisms = str(static_cast<amqp_connection_start_t*>(start.payload.method.decoded)->mechanisms);
  const char* mechanism = u.external ? "EXTERNAL" : "PLAIN";
  if (!offers(mechanisms, mechanism))
    throw AmqpError(fmt::format("{}: the broker does not offer {} (it offers: {}){}", where, mechanism, mechanisms,
                                u.external ? "; enable the rabbitmq_auth_mechanism_ssl plugin" : ""));

  // authentication_failure_close: a refused login is a connection.close
  // saying why, not a dropped socket. connection.blocked: the broker says
  // when an alarm stops it reading us. consumer_cancel_notify: it says when
  // a queue we consume was deleted. basic.nack: confirms may be negative.
  amqp_table_entry_t capabilities[5];
  const char* names[] = {"authentication_failure_close", "connection.blocked", "consumer_cancel_notify",
                         "publisher_confirms", "basic.nack"};
  for (size_t i = 0; i < 5; ++i) {
    capabilities[i].key = amqp_cstring_bytes(names[i]);
    capabilities[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capabilities[i].value.value.boolean = 1;
  }
  amqp_table_entry_t props[4] = {entry("product", "tern"), entry("platform", "C++"),
                                 entry("connection_name", connection_name), {}};
  props[3].key = amqp_cstring_bytes("capabilities");
  props[3].value.kind = AMQP_FIELD_KIND_TABLE;
  props[3].value.value.table = amqp_table_t{5, capabilities};
  std::string response;
  if (u.external) {
    user_ = socket_->own_common_name();   // the broker maps the certificate to this user
  } else {
    response.push_back('\0');
    response += u.user;
    response.push_back('\0');
    response += u.password;
    user_ = u.user;
  }
  amqp_connection_start_ok_t ok{};
  ok.client_properties = amqp_table_t{4, props};
  ok.mechanism = amqp_cstring_bytes(mechanism);
  ok.response = bytes(response);
  ok.locale = amqp_cstring_bytes("en_US");
  append_method(0, AMQP_CONNECTION_START_OK_METHOD, &ok);
  std::fill(response.begin(), response.end(), '\0');
  amqp_maybe_release_buffers(conn_);

  const amqp_frame_t tune_frame = await(0, AMQP_CONNECTION_TUNE_METHOD, Clock::now() + kRpcTimeout, where);
  const auto* tune = static_cast<amqp_connection_tune_t*>(tune_frame.payload.method.decoded);
  // The lower of each limit, 0 meaning none (AMQP 0-9-1 section 1.4.2.6).
  amqp_connection_tune_ok_t tune_ok{};
  tune_ok.channel_max = tune->channel_max != 0 ? tune->channel_max : 2047;
  tune_ok.frame_max = tune->frame_max != 0 ? std::min(tune->frame_max, kFrameMax) : kFrameMax;
  int heartbeat = std::max(heartbeat_s, 0);
  if (tune->heartbeat != 0 && tune->heartbeat < heartbeat) heartbeat = tune->heartbeat;
  tune_ok.heartbeat = static_cast<uint16_t>(heartbeat);
  amqp_maybe_release_buffers(conn_);
  // rabbitmq-c decodes frames up to frame_max; it sends none of its own.
  if (int rc = amqp_tune_connection(conn_, tune_ok.channel_max, static_cast<int>(tune_ok.frame_max), 0);
      rc != AMQP_STATUS_OK)
    throw AmqpError(fmt::format("{}: {}", where, amqp_error_string2(rc)));
  frame_max_ = tune_ok.frame_max;
  append_method(0, AMQP_CONNECTION_TUNE_OK_METHOD, &tune_ok);
  heartbeat_ = Heartbeat(std::chrono::seconds(heartbeat), Clock::now());

  amqp_connection_open_t open{};
  open.virtual_host = bytes(u.vhost);
  rpc(0, AMQP_CONNECTION_OPEN_METHOD, &open, AMQP_CONNECTION_OPEN_OK_METHOD, where);
}

AmqpConnection::~AmqpConnection() {
  if (conn_ == nullptr) return;
  close();
  socket_.reset();
  amqp_destroy_connection(conn_);
  empty_amqp_pool(&pool_);
}

int AmqpConnection::fd() const { return socket_ ? socket_->fd() : -1; }

amqp_frame_t AmqpConnection::rpc(amqp_channel_t ch, amqp_method_number_t id, void* decoded,
                                 amqp_method_number_t reply, std::string_view what) {
  append_method(ch, id, decoded);
  if (failed_) throw AmqpError(fmt::format("{}: {}", what, error_));
  return await(ch, reply, Clock::now() + kRpcTimeout, what);
}

amqp_frame_t AmqpConnection::await(amqp_channel_t ch, amqp_method_number_t reply, Clock::time_point deadline,
                                   std::string_view what) {
  amqp_maybe_release_buffers(conn_);
  for (;;) {
    // A whole frame at the front of what was read: the reply, a close
    // saying why there is none, or something for later (a delivery behind
    // a consume-ok), kept as it came for poll_messages.
    while (setup_in_.size() >= 7) {
      const size_t size = 7 + get32(setup_in_.data() + 3) + 1;
      if (size > frame_max_ + 8) throw AmqpError(fmt::format("{}: a frame of {} bytes from the broker", what, size));
      if (setup_in_.size() < size) break;
      const auto type = static_cast<uint8_t>(setup_in_[0]);
      const amqp_channel_t channel = static_cast<amqp_channel_t>((static_cast<uint8_t>(setup_in_[1]) << 8) |
                                                                 static_cast<uint8_t>(setup_in_[2]));
      const amqp_method_number_t id = type == AMQP_FRAME_METHOD && size >= 12 ? get32(setup_in_.data() + 7) : 0;
      const bool closes = id == AMQP_CONNECTION_CLOSE_METHOD || (id == AMQP_CHANNEL_CLOSE_METHOD && channel == ch);
      if ((id == reply && channel == ch) || closes) {
        amqp_frame_t f;
        const int used = amqp_handle_input(conn_, amqp_bytes_t{size, setup_in_.data()}, &f);
        setup_in_.erase(0, size);
        if (used < 0 || f.frame_type != AMQP_FRAME_METHOD)
          throw AmqpError(fmt::format("{}: cannot decode the broker's reply", what));
        if (!closes) return f;
        std::string why;
        if (id == AMQP_CONNECTION_CLOSE_METHOD) {
          auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
          why = fmt::format("connection closed by broker: {} {}", m->reply_code, str(m->reply_text));
          amqp_connection_close_ok_t close_ok{};
          append_method(0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
          flush();
          closed_ = true;
        } else {
          auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
          why = fmt::format("channel closed by broker: {} {}", m->reply_code, str(m->reply_text));
        }
        fail(why);
        throw AmqpError(fmt::format("{}: {}", what, why));
      }
      if (type != AMQP_FRAME_HEARTBEAT) stash_.append(setup_in_, 0, size);
      setup_in_.erase(0, size);
    }
    if (!flush()) throw AmqpError(fmt::format("{}: {}", what, error_));
    if (!keep_heartbeat(Clock::now())) throw AmqpError(fmt::format("{}: {}", what, error_));
    char buf[16384];
    const auto r = socket_->recv_some(buf, sizeof buf);
    if (r.status == BrokerSocket::Status::kOk) {
      heartbeat_.received(Clock::now());
      setup_in_.append(buf, r.n);
      continue;
    }
    if (r.status != BrokerSocket::Status::kAgain) {
      const bool logging_in = reply == AMQP_CONNECTION_TUNE_METHOD || reply == AMQP_CONNECTION_OPEN_OK_METHOD;
      fail(socket_->error());
      throw AmqpError(fmt::format("{}: {}{}", what, socket_->error(),
                                  logging_in ? " (a refused login, or a connection limit?)" : ""));
    }
    if (Clock::now() >= deadline) {
      fail("no reply from the broker");
      throw AmqpError(fmt::format("{}: no reply from the broker within {} s", what,
                                  std::chrono::duration_cast<std::chrono::seconds>(kRpcTimeout).count()));
    }
    socket_->wait(has_output(), std::min(deadline, heartbeat_due()));
  }
}

bool AmqpConnection::own_heartbeats() {
  if (failed_) return false;
  // Set-up ran on another thread: this one's looks are due from now.
  heartbeat_.looked(!has_output());
  own_heartbeats_ = true;
  return true;
}

bool AmqpConnection::wake_up(std::chrono::steady_clock::time_point now) {
  if (failed_) return false;
  if (!own_heartbeats_) return true;
  if (heartbeat_.slept_through(now)) {
    const double late = std::chrono::duration<double>(heartbeat_.late(now)).count();
    return fail(fmt::format("this process ran {:.1f} s late (stopped, or its thread blocked), over 2 heartbeats "
                            "of {} s: the broker has dropped the connection",
                            late, heartbeat_.interval().count()));
  }
  return true;
}

bool AmqpConnection::keep_heartbeat(std::chrono::steady_clock::time_point now) {
  if (failed_) return false;
  if (heartbeat_.dead(now)) {
    const double silent = std::chrono::duration<double>(heartbeat_.silence(now)).count();
    return fail(fmt::format("missed heartbeats: nothing from the broker for {:.1f} s (heartbeat {} s)", silent,
                            heartbeat_.interval().count()));
  }
  // Output waiting means bytes are on their way: a heartbeat would only
  // queue behind them (and a stuck socket is the broker's silence to judge).
  bool ok = true;
  if (heartbeat_.send_due(now) && !has_output()) {
    append_frame(AMQP_FRAME_HEARTBEAT, 0, {}, {});
    ok = flush();
  }
  heartbeat_.looked(!has_output());   // the latest the next look may come (wake_up)
  return ok;
}

bool AmqpConnection::fail(std::string why) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(why);
  }
  return false;
}

void AmqpConnection::close() {
  if (closed_ || conn_ == nullptr) return;
  closed_ = true;
  // A blocked connection is not read by the broker: the close-ok would
  // not come, and a stuck output buffer would hold the close back anyway.
  if (failed_ || blocked_) return;
  try {
    amqp_connection_close_t m{};
    m.reply_code = AMQP_REPLY_SUCCESS;
    m.reply_text = amqp_cstring_bytes("closing");
    append_method(0, AMQP_CONNECTION_CLOSE_METHOD, &m);
    await(0, AMQP_CONNECTION_CLOSE_OK_METHOD, Clock::now() + kCloseTimeout, "closing");
    socket_->shutdown();
  } catch (const AmqpError& e) {
    // Gone or silent: the socket closes all the same. Acks the broker had
    // not read by then may be lost with it (it redelivers those).
    log::warn("closing the broker connection without its close-ok: {}", e.what());
  }
  fail("connection closed");
}

}  // namespace tern::detail
