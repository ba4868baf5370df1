#include "transport/amqp/connection.h"

#include <amqp_tcp_socket.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "tern/log.h"

namespace tern::detail {
namespace {

constexpr size_t kFlushEarlyBytes = 64 * 1024;

amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
std::string str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

std::string describe(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply from the broker";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return fmt::format("connection closed by broker: {} {}", m->reply_code, str(m->reply_text));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return fmt::format("channel closed by broker: {} {}", m->reply_code, str(m->reply_text));
      }
      return fmt::format("unexpected broker method 0x{:08x}", r.reply.id);
  }
  return "unknown";
}

}  // namespace

AmqpConnection::AmqpConnection(const std::string& url, int heartbeat_s,
                               const std::string& connection_name) {
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
    throw AmqpError(fmt::format("malformed AMQP URL '{}'", url));
  // "amqp://host:5672/" names the empty vhost by the letter of the URI spec;
  // like most clients we take it as the default vhost "/".
  if (info.vhost == nullptr || *info.vhost == '\0') info.vhost = const_cast<char*>("/");

  conn_ = amqp_new_connection();
  // Bounds every synchronous method (set-up, close) so none can hang.
  timeval rpc_timeout{10, 0};
  amqp_set_rpc_timeout(conn_, &rpc_timeout);
  amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
  if (socket == nullptr) throw AmqpError("cannot create a TCP socket");
  timeval connect_timeout{5, 0};
  int rc = amqp_socket_open_noblock(socket, info.host, info.port, &connect_timeout);
  if (rc != AMQP_STATUS_OK) {
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
    throw AmqpError(fmt::format("cannot connect to {}:{}: {}", info.host, info.port,
                                amqp_error_string2(rc)));
  }

  amqp_table_entry_t entry;
  entry.key = amqp_cstring_bytes("connection_name");
  entry.value.kind = AMQP_FIELD_KIND_UTF8;
  entry.value.value.bytes = bytes(connection_name);
  amqp_table_t props{1, &entry};
  amqp_rpc_reply_t r = amqp_login_with_properties(conn_, info.vhost, 0, 131072, heartbeat_s,
                                                  &props, AMQP_SASL_METHOD_PLAIN, info.user,
                                                  info.password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    std::string why = describe(r);
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
    throw AmqpError(fmt::format("cannot log in to {}:{}: {}", info.host, info.port, why));
  }
  frame_max_ = static_cast<size_t>(amqp_get_frame_max(conn_));
  amqp_channel_open(conn_, kChannel);
  r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    std::string why = describe(r);
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
    throw AmqpError("cannot open a channel: " + why);
  }
}

AmqpConnection::~AmqpConnection() {
  if (conn_ == nullptr) return;
  close();
  amqp_destroy_connection(conn_);
}

int AmqpConnection::fd() const { return conn_ ? amqp_get_sockfd(conn_) : -1; }

void AmqpConnection::declare_queue(const std::string& name, const QueueArgs& args) {
  // Durable, so a service's queues outlive its instances and the broker's
  // restarts.
  std::vector<amqp_table_entry_t> entries;
  entries.reserve(args.size());
  for (const QueueArg& arg : args) {
    amqp_table_entry_t e;
    e.key = bytes(arg.key);
    if (const auto* n = std::get_if<int64_t>(&arg.value)) {
      e.value.kind = AMQP_FIELD_KIND_I64;
      e.value.value.i64 = *n;
    } else {
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes(std::get<std::string_view>(arg.value));
    }
    entries.push_back(e);
  }
  amqp_queue_declare(conn_, kChannel, bytes(name), /*passive=*/0, /*durable=*/1, /*exclusive=*/0,
                     /*auto_delete=*/0, amqp_table_t{static_cast<int>(entries.size()), entries.data()});
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw AmqpError(fmt::format("cannot declare queue '{}': {}", name, describe(r)));
}

std::string AmqpConnection::declare_private_queue() {
  amqp_queue_declare_ok_t* ok = amqp_queue_declare(conn_, kChannel, amqp_empty_bytes, 0, 0,
                                                   /*exclusive=*/1, /*auto_delete=*/1, amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL || ok == nullptr)
    throw AmqpError("cannot declare a private queue: " + describe(r));
  return str(ok->queue);
}

void AmqpConnection::declare_exchange(const std::string& name, const char* type) {
  amqp_exchange_declare(conn_, kChannel, bytes(name), amqp_cstring_bytes(type), 0, /*durable=*/1, 0, 0,
                        amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw AmqpError(fmt::format("cannot declare exchange '{}': {}", name, describe(r)));
}

void AmqpConnection::bind(const std::string& queue, const std::string& exchange, const std::string& key) {
  amqp_queue_bind(conn_, kChannel, bytes(queue), bytes(exchange), bytes(key), amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw AmqpError(fmt::format("cannot bind '{}' to '{}': {}", queue, exchange, describe(r)));
}

void AmqpConnection::qos(uint16_t prefetch) {
  amqp_basic_qos(conn_, kChannel, 0, prefetch, 0);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("basic.qos failed: " + describe(r));
}

void AmqpConnection::consume(const std::string& queue, const std::string& consumer_tag,
                             bool no_ack) {
  amqp_basic_consume(conn_, kChannel, bytes(queue), bytes(consumer_tag), /*no_local=*/0,
                     no_ack ? 1 : 0, /*exclusive=*/0, amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw AmqpError(fmt::format("cannot consume from '{}': {}", queue, describe(r)));
}

void AmqpConnection::open_event_channel(const std::string& exchange) {
  amqp_channel_open(conn_, kEventChannel);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("cannot open the event channel: " + describe(r));
  amqp_confirm_select(conn_, kEventChannel);
  r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("confirm.select failed: " + describe(r));
  amqp_exchange_declare(conn_, kEventChannel, bytes(exchange), amqp_cstring_bytes("topic"),
                        /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                        amqp_empty_table);
  r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw AmqpError(fmt::format("cannot declare exchange '{}': {}", exchange, describe(r)));
}

void AmqpConnection::cancel(const std::string& consumer_tag) {
  if (failed_) return;
  amqp_basic_cancel_t m{};
  m.consumer_tag = bytes(consumer_tag);
  m.nowait = 0;
  append_method(kChannel, AMQP_BASIC_CANCEL_METHOD, &m);
}

uint64_t AmqpConnection::publish(const Publish& p) {
  if (failed_) return 0;
  amqp_basic_properties_t props;
  std::memset(&props, 0, sizeof props);
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/x-protobuf");
  props.delivery_mode = p.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
  if (!p.correlation_id.empty()) {
    props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = bytes(p.correlation_id);
  }
  if (!p.reply_to.empty()) {
    props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    props.reply_to = bytes(p.reply_to);
  }
  if (!p.expiration_ms.empty()) {
    props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    props.expiration = bytes(p.expiration_ms);
  }
  if (!p.type.empty()) {
    props._flags |= AMQP_BASIC_TYPE_FLAG;
    props.type = bytes(p.type);
  }
  std::vector<amqp_table_entry_t> header_entries;
  if (p.headers != nullptr && !p.headers->empty()) {
    for (const auto& [k, v] : *p.headers) {
      amqp_table_entry_t e;
      e.key = bytes(k);
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes(v);
      header_entries.push_back(e);
    }
    props._flags |= AMQP_BASIC_HEADERS_FLAG;
    props.headers = amqp_table_t{static_cast<int>(header_entries.size()), header_entries.data()};
  }
  if (!p.message_id.empty()) {
    props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props.message_id = bytes(p.message_id);
  }
  amqp_basic_publish_t m{};
  m.exchange = bytes(p.exchange);
  m.routing_key = bytes(p.routing_key);
  m.mandatory = p.mandatory ? 1 : 0;
  append_method(p.channel, AMQP_BASIC_PUBLISH_METHOD, &m);
  append_content(p.channel, props, p.body);
  // Write early when much is queued: bounds memory and keeps the pipe busy.
  if (out_.size() - sent_ >= kFlushEarlyBytes) flush();
  if (failed_) return 0;
  return p.channel == kEventChannel ? next_event_tag_++ : 1;
}

bool AmqpConnection::ack(uint64_t delivery_tag) {
  if (failed_) return false;
  amqp_basic_ack_t m{};
  m.delivery_tag = delivery_tag;
  m.multiple = 0;
  append_method(kChannel, AMQP_BASIC_ACK_METHOD, &m);
  return !failed_;
}

// Frame layout (AMQP 0-9-1 section 4.2.3): type (1 byte), channel (2),
// payload size (4), payload, 0xCE. Numbers are big-endian.
namespace {
constexpr size_t kFrameHeader = 7;
void put16(char* p, uint16_t v) { p[0] = static_cast<char>(v >> 8); p[1] = static_cast<char>(v); }
void put32(char* p, uint32_t v) { put16(p, static_cast<uint16_t>(v >> 16)); put16(p + 2, static_cast<uint16_t>(v)); }
void put64(char* p, uint64_t v) { put32(p, static_cast<uint32_t>(v >> 32)); put32(p + 4, static_cast<uint32_t>(v)); }
}  // namespace

void AmqpConnection::append_frame(uint8_t type, amqp_channel_t ch, std::string_view head,
                                  std::string_view payload) {
  if (sent_ == out_.size()) output_since_ = std::chrono::steady_clock::now();
  const size_t size = head.size() + payload.size();
  char header[kFrameHeader];
  header[0] = static_cast<char>(type);
  put16(header + 1, ch);
  put32(header + 3, static_cast<uint32_t>(size));
  out_.append(header, kFrameHeader);
  out_.append(head);
  out_.append(payload);
  out_.push_back(static_cast<char>(AMQP_FRAME_END));
}

void AmqpConnection::append_method(amqp_channel_t ch, amqp_method_number_t id, void* decoded) {
  char buf[4 + 1024];  // our methods carry two short strings at most
  put32(buf, id);
  int n = amqp_encode_method(id, decoded, amqp_bytes_t{sizeof buf - 4, buf + 4});
  if (n < 0) {
    fail(std::string("cannot encode an AMQP method: ") + amqp_error_string2(n));
    return;
  }
  append_frame(AMQP_FRAME_METHOD, ch, std::string_view(buf, 4 + static_cast<size_t>(n)), {});
}

void AmqpConnection::append_content(amqp_channel_t ch, const amqp_basic_properties_t& props,
                                    std::string_view body) {
  char buf[12 + 2048];
  put16(buf, AMQP_BASIC_CLASS);
  put16(buf + 2, 0);  // weight
  put64(buf + 4, body.size());
  int n = amqp_encode_properties(AMQP_BASIC_CLASS, const_cast<amqp_basic_properties_t*>(&props),
                                 amqp_bytes_t{sizeof buf - 12, buf + 12});
  if (n < 0) {
    fail(std::string("cannot encode AMQP properties: ") + amqp_error_string2(n));
    return;
  }
  append_frame(AMQP_FRAME_HEADER, ch, std::string_view(buf, 12 + static_cast<size_t>(n)), {});
  const size_t chunk = frame_max_ - kFrameHeader - 1;
  for (size_t at = 0; at < body.size(); at += chunk)
    append_frame(AMQP_FRAME_BODY, ch, {}, body.substr(at, std::min(chunk, body.size() - at)));
}

bool AmqpConnection::flush() {
  if (failed_) return false;
  const int fd = amqp_get_sockfd(conn_);
  while (sent_ < out_.size()) {
    ssize_t n = ::send(fd, out_.data() + sent_, out_.size() - sent_, MSG_NOSIGNAL);
    if (n > 0) {
      sent_ += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      return fail(std::string("send: ") + std::strerror(errno));
    }
  }
  if (sent_ == out_.size()) {
    out_.clear();
    sent_ = 0;
    if (out_.capacity() > 4 * kFlushEarlyBytes) out_.shrink_to_fit();
  } else if (sent_ > out_.size() / 2) {
    out_.erase(0, sent_);
    sent_ = 0;
  }
  return true;
}

bool AmqpConnection::fail(std::string why) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(why);
  }
  return false;
}

bool AmqpConnection::poll_messages(Sink& sink) {
  if (failed_) return false;
  for (bool first = true;; first = false) {
    // The first read may hit the socket (and services heartbeats); after
    // that, only decode what is already buffered: the caller polls the
    // socket again before the next round, which saves a recv() and a poll()
    // per wake-up.
    if (!first && !amqp_data_in_buffer(conn_) && !amqp_frames_enqueued(conn_)) break;
    amqp_frame_t f;
    timeval now{0, 0};
    int rc = amqp_simple_wait_frame_noblock(conn_, &f, &now);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) {
      fail(amqp_error_string2(rc));
      break;
    }
    if (f.frame_type == AMQP_FRAME_METHOD) {
      on_method(f, sink);
      if (failed_) break;
      continue;
    }
    if (f.frame_type == AMQP_FRAME_HEADER && expect_ == Expect::kHeader) {
      auto* props = static_cast<amqp_basic_properties_t*>(f.payload.properties.decoded);
      if (props->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) current_.correlation_id = str(props->correlation_id);
      if (props->_flags & AMQP_BASIC_REPLY_TO_FLAG) current_.reply_to = str(props->reply_to);
      if (props->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) current_.content_type = str(props->content_type);
      if (props->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < props->headers.num_entries; ++i) {
          const amqp_table_entry_t& e = props->headers.entries[i];
          if (e.value.kind != AMQP_FIELD_KIND_UTF8) continue;
          current_.headers.emplace_back(str(e.key), str(e.value.value.bytes));
          if (str(e.key) == "x-tern-deliveries")
            current_.deliveries = static_cast<uint32_t>(std::max(1, std::atoi(str(e.value.value.bytes).c_str())));
        }
      }
      body_size_ = f.payload.properties.body_size;
      current_.body.reserve(body_size_);
      expect_ = Expect::kBody;
    } else if (f.frame_type == AMQP_FRAME_BODY && expect_ == Expect::kBody) {
      const amqp_bytes_t& frag = f.payload.body_fragment;
      current_.body.append(static_cast<const char*>(frag.bytes), frag.len);
    } else {
      fail(fmt::format("unexpected AMQP frame type {}", f.frame_type));
      break;
    }
    if (expect_ == Expect::kBody && current_.body.size() >= body_size_) {
      expect_ = Expect::kMethod;
      Message done = std::move(current_);
      current_ = Message{};
      sink.on_message(std::move(done));
    }
  }
  amqp_maybe_release_buffers(conn_);
  return !failed_;
}

void AmqpConnection::on_method(const amqp_frame_t& f, Sink& sink) {
  switch (f.payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      auto* d = static_cast<amqp_basic_deliver_t*>(f.payload.method.decoded);
      current_ = Message{};
      current_.delivery_tag = d->delivery_tag;
      current_.redelivered = d->redelivered != 0;
      current_.consumer_tag = str(d->consumer_tag);
      current_.routing_key = str(d->routing_key);
      expect_ = Expect::kHeader;
      break;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      auto* r = static_cast<amqp_basic_return_t*>(f.payload.method.decoded);
      current_ = Message{};
      current_.returned = true;
      current_.reply_code = r->reply_code;
      current_.reply_text = str(r->reply_text);
      current_.routing_key = str(r->routing_key);
      expect_ = Expect::kHeader;
      break;
    }
    case AMQP_BASIC_ACK_METHOD: {
      auto* m = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
      if (f.channel == kEventChannel) sink.on_confirm(m->delivery_tag, m->multiple != 0, true);
      break;
    }
    case AMQP_BASIC_NACK_METHOD: {
      auto* m = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
      if (f.channel == kEventChannel) sink.on_confirm(m->delivery_tag, m->multiple != 0, false);
      break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
      std::string why = fmt::format("channel {} closed by broker: {} {}", f.channel, m->reply_code,
                                    str(m->reply_text));
      amqp_channel_close_ok_t ok{};
      amqp_send_method(conn_, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      fail(std::move(why));
      break;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
      std::string why = fmt::format("connection closed by broker: {} {}", m->reply_code, str(m->reply_text));
      amqp_connection_close_ok_t ok{};
      amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      closed_ = true;
      fail(std::move(why));
      break;
    }
    case AMQP_BASIC_CANCEL_METHOD:
      // The broker cancelled one of our consumers (its queue was deleted).
      fail("consumer cancelled by the broker (queue deleted?)");
      break;
    case AMQP_BASIC_CANCEL_OK_METHOD:
    default:
      break;
  }
}

void AmqpConnection::close() {
  if (closed_ || conn_ == nullptr) return;
  closed_ = true;
  if (failed_) return;
  // rabbitmq-c writes the close frames itself: ours must all be out first.
  for (int i = 0; i < 100 && has_output() && flush(); ++i) {
    pollfd p{amqp_get_sockfd(conn_), POLLOUT, 0};
    poll(&p, 1, 10);
  }
  if (has_output() || failed_) return;
  amqp_channel_close(conn_, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  fail("connection closed");
}

}  // namespace tern::detail
