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
    throw AmqpError("malformed AMQP URL (it is not shown: it may hold a password)");
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

  // rabbitmq-c 0.11 sends the capabilities authentication_failure_close and
  // exchange_exchange_bindings, and merges a `capabilities` table of ours
  // into its own key by key. Without connection.blocked the broker blocks
  // us silently in an alarm; without consumer_cancel_notify it never says
  // that a queue we consume was deleted.
  amqp_table_entry_t capabilities[2];
  capabilities[0].key = amqp_cstring_bytes("connection.blocked");
  capabilities[1].key = amqp_cstring_bytes("consumer_cancel_notify");
  for (amqp_table_entry_t& c : capabilities) {
    c.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    c.value.value.boolean = 1;
  }
  amqp_table_entry_t entries[2];
  entries[0].key = amqp_cstring_bytes("connection_name");
  entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[0].value.value.bytes = bytes(connection_name);
  entries[1].key = amqp_cstring_bytes("capabilities");
  entries[1].value.kind = AMQP_FIELD_KIND_TABLE;
  entries[1].value.value.table = amqp_table_t{2, capabilities};
  amqp_table_t props{2, entries};
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
  user_ = info.user;
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

amqp_table_t queue_arguments(const topology::QueueArgs& args, std::vector<amqp_table_entry_t>* entries) {
  entries->clear();
  entries->reserve(args.size());
  for (const topology::QueueArg& arg : args) {
    amqp_table_entry_t e;
    e.key = bytes(arg.key);
    if (const auto* n = std::get_if<int64_t>(&arg.value)) {
      e.value.kind = AMQP_FIELD_KIND_I64;
      e.value.value.i64 = *n;
    } else {
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes(std::get<std::string>(arg.value));
    }
    entries->push_back(e);
  }
  return amqp_table_t{static_cast<int>(entries->size()), entries->data()};
}

void AmqpConnection::declare_queue(const std::string& name, const QueueArgs& args) {
  // Durable, so a service's queues outlive its instances and the broker's
  // restarts.
  std::vector<amqp_table_entry_t> entries;
  amqp_queue_declare(conn_, kChannel, bytes(name), /*passive=*/0, /*durable=*/1, /*exclusive=*/0,
                     /*auto_delete=*/0, queue_arguments(args, &entries));
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
  private_queue_ = str(ok->queue);
  return private_queue_;
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

void AmqpConnection::open_event_channel() {
  amqp_channel_open(conn_, kEventChannel);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("cannot open the event channel: " + describe(r));
  amqp_confirm_select(conn_, kEventChannel);
  r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("confirm.select failed: " + describe(r));
  amqp_channel_open(conn_, kNoticeChannel);
  r = amqp_get_rpc_reply(conn_);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("cannot open the notice channel: " + describe(r));
}

bool AmqpConnection::own_heartbeats() {
  if (failed_) return false;
  if (own_heartbeats_) return true;
  // amqp_tune_connection aborts the process unless rabbitmq-c is between
  // frames; set-up ends with a whole reply read, so it always is here.
  if (!amqp_release_buffers_ok(conn_)) return fail("cannot take over heartbeats: rabbitmq-c is mid-frame");
  const int negotiated = amqp_get_heartbeat(conn_);
  const int rc = amqp_tune_connection(conn_, amqp_get_channel_max(conn_), amqp_get_frame_max(conn_), 0);
  if (rc != AMQP_STATUS_OK) return fail(std::string("cannot take over heartbeats: ") + amqp_error_string2(rc));
  own_heartbeats_ = true;
  heartbeat_ = Heartbeat(std::chrono::seconds(negotiated), std::chrono::steady_clock::now());
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
  if (!own_heartbeats_) return true;
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
  if (failed_) return;
  // rabbitmq-c writes the close frames itself: ours must all be out first.
  for (int i = 0; i < 100 && has_output() && flush(); ++i) {
    pollfd p{amqp_get_sockfd(conn_), POLLOUT, 0};
    poll(&p, 1, 10);
  }
  // A blocked connection is not read by the broker: the close methods,
  // which rabbitmq-c waits for, would stall this thread for their timeouts.
  if (has_output() || failed_ || blocked_) return;
  amqp_channel_close(conn_, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  fail("connection closed");
}

}  // namespace tern::detail
