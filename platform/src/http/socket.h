// A non-blocking socket read and written by one fiber, in the clear or
// through TLS (core/tls.h). Reactor thread only. Every wait parks the
// calling fiber in Reactor::wait_fd; no call blocks the thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/tls.h"
#include "runtime/reactor.h"

namespace tern::detail {

class Socket {
 public:
  // Takes the fd: the destructor ends its waits and closes it.
  Socket(Reactor& loop, int fd);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }

  // Puts TLS on the connection and runs the handshake, waiting for the fd
  // as it asks, until `deadline`. A client context checks that the peer's
  // certificate names `server_name` (a host name or an IP address); a
  // server context ignores it. From then on read_some and write_all go
  // through the session. False if the handshake failed (tls_error() says
  // why, certificate_refused() whether it was the peer's certificate),
  // timed out (timed_out()) or its wait was cancelled. Once per socket.
  bool start_tls(std::shared_ptr<tls::Context> ctx, std::string_view server_name, Clock::time_point deadline);
  bool is_tls() const { return tls_ != nullptr; }
  // Why start_tls, read_some or write_all failed in TLS ("TLS handshake:
  // certificate verify failed: ..."): for logs, never for a peer.
  const std::string& tls_error() const;
  tls::Session::Refusal certificate_refused() const;

  // Appends what arrives to `buffer_`; false on EOF, error or deadline.
  bool read_some(Clock::time_point deadline);
  // Sends all of `data`; false on error or deadline.
  bool write_all(std::string_view data, Clock::time_point deadline);
  bool timed_out() const { return timed_out_; }
  // The peer ended its stream in order: a FIN in the clear, a close_notify
  // in TLS. An HTTPS body read until the end needs this: a TCP close alone
  // may be an attacker truncating it.
  bool eof() const { return eof_; }

  std::string buffer_;   // bytes read and not yet consumed

 private:
  // Waits for `events`; false (timed_out_ set if by the deadline) if the
  // fd did not become ready, or on POLLERR/POLLHUP when `hangup_fails`.
  bool wait(short events, Clock::time_point deadline, bool hangup_fails);
  bool tls_read(Clock::time_point deadline);
  bool tls_write_all(std::string_view data, Clock::time_point deadline);

  Reactor& loop_;
  int fd_;
  bool timed_out_ = false;
  bool eof_ = false;
  bool tls_failed_ = false;   // no close_notify after a TLS error
  std::unique_ptr<tls::Session> tls_;
};

}  // namespace tern::detail
