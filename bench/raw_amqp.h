// What the raw rabbitmq-c benchmarks share: connecting to TERN_AMQP_URL and
// dying with a readable reason. Header-only; each benchmark is one file.
#pragma once

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace raw {

constexpr amqp_channel_t kChannel = 1;

[[noreturn]] inline void die(std::string_view why) {
  fmt::print(stderr, "{}: {}\n", program_invocation_short_name, why);
  std::exit(1);
}

inline amqp_bytes_t bytes(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }
inline std::string_view view(amqp_bytes_t b) { return {static_cast<const char*>(b.bytes), b.len}; }

// Dies with a readable reason unless a synchronous call (queue.declare, ...) succeeded.
inline void check(const amqp_rpc_reply_t& r, std::string_view what) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_NONE:
      die(fmt::format("{}: no reply from the broker", what));
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      die(fmt::format("{}: {}", what, amqp_error_string2(r.library_error)));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        die(fmt::format("{}: connection closed: {} {}", what, m->reply_code, view(m->reply_text)));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        die(fmt::format("{}: channel closed: {} {}", what, m->reply_code, view(m->reply_text)));
      }
      die(fmt::format("{}: unexpected {}", what, amqp_method_name(r.reply.id)));
  }
}

// Opens the connection and channel kChannel to TERN_AMQP_URL.
inline amqp_connection_state_t connect_broker() {
  const char* env = std::getenv("TERN_AMQP_URL");
  if (env == nullptr) die("TERN_AMQP_URL is not set (e.g. amqp://USER:PASSWORD@127.0.0.1:5672/)");
  std::string url = env;  // amqp_parse_url cuts it up in place
  // amqps://...?cacertfile=PATH: rabbitmq-c's own TLS socket, the TLS floor.
  std::string cacert;
  if (size_t q = url.find('?'); q != std::string::npos) {
    if (size_t at = url.find("cacertfile=", q); at != std::string::npos)
      cacert = url.substr(at + 11, url.find('&', at) - (at + 11));
    url.resize(q);
  }
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(url.data(), &info) != AMQP_STATUS_OK) die("bad TERN_AMQP_URL (not shown: it may hold a password)");
  // "amqp://host:port/" names the empty vhost by the letter of the URI spec;
  // like most clients, take it as the default vhost "/".
  if (info.vhost == nullptr || *info.vhost == '\0') info.vhost = const_cast<char*>("/");

  amqp_connection_state_t conn = amqp_new_connection();
  timeval rpc_timeout{10, 0};  // bounds the synchronous set-up calls
  amqp_set_rpc_timeout(conn, &rpc_timeout);
  amqp_socket_t* socket = info.ssl ? amqp_ssl_socket_new(conn) : amqp_tcp_socket_new(conn);
  if (socket == nullptr) die("cannot create a socket");
  if (info.ssl && !cacert.empty() && amqp_ssl_socket_set_cacert(socket, cacert.c_str()) != AMQP_STATUS_OK)
    die(fmt::format("cannot load the CA file {}", cacert));
  timeval connect_timeout{10, 0};
  if (int rc = amqp_socket_open_noblock(socket, info.host, info.port, &connect_timeout); rc != 0)
    die(fmt::format("cannot connect to {}:{}: {}", info.host, info.port, amqp_error_string2(rc)));
  check(amqp_login(conn, info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, /*heartbeat=*/0,
                   AMQP_SASL_METHOD_PLAIN, info.user, info.password),
        "login");
  amqp_channel_open(conn, kChannel);
  check(amqp_get_rpc_reply(conn), "channel.open");

  // rabbitmq-c turns Nagle off itself when it opens the socket; a latency
  // floor depends on that, so make sure.
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  int fd = amqp_get_sockfd(conn);
  if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0 || nodelay == 0) {
    fmt::print(stderr, "{}: TCP_NODELAY was off; turning it on\n", program_invocation_short_name);
    nodelay = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
  }
  return conn;
}

// Dies if `method` is the broker closing the channel or the connection.
inline void die_if_closed(const amqp_method_t& method) {
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    auto* m = static_cast<amqp_channel_close_t*>(method.decoded);
    die(fmt::format("channel closed by the broker: {} {}", m->reply_code, view(m->reply_text)));
  }
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    auto* m = static_cast<amqp_connection_close_t*>(method.decoded);
    die(fmt::format("connection closed by the broker: {} {}", m->reply_code, view(m->reply_text)));
  }
}

}  // namespace raw
