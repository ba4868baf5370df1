// The byte stream under an AMQP connection: a non-blocking TCP socket,
// with TLS on it for amqps://. tern writes and reads every byte itself
// (set-up included), so the one non-blocking writer serves both.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "core/tls.h"
#include "transport/amqp/broker_url.h"

namespace tern::detail {

class BrokerSocket {
 public:
  // Connects to url's host and port and, for amqps://, completes the TLS
  // handshake with the broker's certificate verified, all by `deadline`.
  // Blocks (set-up runs off the serving thread); throws AmqpError.
  BrokerSocket(const BrokerUrl& url, std::chrono::steady_clock::time_point deadline);
  ~BrokerSocket();
  BrokerSocket(const BrokerSocket&) = delete;
  BrokerSocket& operator=(const BrokerSocket&) = delete;

  int fd() const { return fd_; }
  bool tls() const { return tls_ != nullptr; }
  // With a client certificate: its common name (the EXTERNAL login's user).
  std::string own_common_name() const { return ctx_ ? ctx_->own_common_name() : std::string(); }

  enum class Status { kOk, kAgain, kEof, kError };
  struct Io {
    size_t n = 0;
    Status status = Status::kOk;
  };
  // One send() or SSL_write of what the socket takes; kAgain: wait for it.
  Io send_some(const char* data, size_t len);
  // One recv() or SSL_read; kAgain: nothing there yet.
  Io recv_some(char* buf, size_t len);
  // Decrypted input waits inside TLS: recv_some again before polling.
  bool pending() const { return tls_ && tls_->pending(); }
  // Why the last kError (or kEof) happened.
  const std::string& error() const { return error_; }
  // Waits (poll) until the socket can be read, or also written; false at the deadline.
  bool wait(bool for_write, std::chrono::steady_clock::time_point deadline) const;
  // Sends TLS close_notify (best effort).
  void shutdown();

 private:
  int fd_ = -1;
  std::shared_ptr<tls::Context> ctx_;
  std::unique_ptr<tls::Session> tls_;
  std::string error_;
};

}  // namespace tern::detail
