#include "transport/amqp/broker_socket.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "transport/amqp/connection.h"

namespace tern::detail {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60'000));
}

// One non-blocking TCP connection to host:port, trying each address.
int connect_tcp(const std::string& host, int port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    throw AmqpError(fmt::format("cannot resolve {}: {}", host, gai_strerror(rc)));
  std::string why = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, remaining_ms(deadline));
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 0) {
        errno = ETIMEDOUT;
        rc = -1;
      } else if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
        errno = err;
        rc = -1;
      } else if (rc > 0) {
        rc = 0;
      }
    }
    if (rc != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) throw AmqpError(fmt::format("cannot connect to {}:{}: {}", host, port, why));
  // Frames are written whole and flushed on purpose: no Nagle delay.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  return fd;
}

// One TLS context per set of files and settings, shared by the process's
// connections (set-up runs on threads of its own: a lock).
std::shared_ptr<tls::Context> client_context(const BrokerUrl& u) {
  static std::mutex mutex;
  static std::map<std::tuple<std::string, std::string, std::string, bool>, std::weak_ptr<tls::Context>> cache;
  std::lock_guard lock(mutex);
  auto& slot = cache[{u.ca_file, u.cert_file, u.key_file, u.verify}];
  if (auto ctx = slot.lock()) return ctx;
  try {
    auto ctx = tls::Context::client({u.ca_file, u.cert_file, u.key_file, u.verify});
    slot = ctx;
    return ctx;
  } catch (const tls::TlsError& e) {
    throw AmqpError(e.what());
  }
}

}  // namespace

BrokerSocket::BrokerSocket(const BrokerUrl& url, Clock::time_point deadline) {
  fd_ = connect_tcp(url.host, url.port, deadline);
  if (!url.tls) return;
  try {
    ctx_ = client_context(url);
    tls_ = std::make_unique<tls::Session>(ctx_, fd_, url.server_name.empty() ? url.host : url.server_name);
  } catch (const std::exception& e) {
    ::close(fd_);
    throw AmqpError(e.what());
  }
  for (;;) {
    const tls::Io io = tls_->handshake();
    if (io == tls::Io::kOk) return;
    if ((io == tls::Io::kWantRead || io == tls::Io::kWantWrite) && wait(io == tls::Io::kWantWrite, deadline))
      continue;
    std::string why = io == tls::Io::kWantRead || io == tls::Io::kWantWrite ? "TLS handshake: timed out"
                      : tls_->error().empty()                              ? "TLS handshake: the broker closed the connection"
                                                                           : tls_->error();
    tls_.reset();
    ::close(fd_);
    throw AmqpError(fmt::format("cannot connect to {}:{} over TLS: {}", url.host, url.port, why));
  }
}

BrokerSocket::~BrokerSocket() {
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
}

BrokerSocket::Io BrokerSocket::send_some(const char* data, size_t len) {
  if (tls_) {
    const auto r = tls_->write(data, len);
    if (r.io == tls::Io::kOk) return {r.n, Status::kOk};
    if (r.io == tls::Io::kWantRead || r.io == tls::Io::kWantWrite) return {0, Status::kAgain};
    error_ = r.io == tls::Io::kClosed ? "the broker closed the TLS connection" : tls_->error();
    return {0, Status::kError};
  }
  for (;;) {
    const ssize_t n = ::send(fd_, data, len, MSG_NOSIGNAL);
    if (n >= 0) return {static_cast<size_t>(n), Status::kOk};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {0, Status::kAgain};
    error_ = std::string("send: ") + std::strerror(errno);
    return {0, Status::kError};
  }
}

BrokerSocket::Io BrokerSocket::recv_some(char* buf, size_t len) {
  if (tls_) {
    const auto r = tls_->read(buf, len);
    if (r.io == tls::Io::kOk) return {r.n, Status::kOk};
    if (r.io == tls::Io::kWantRead || r.io == tls::Io::kWantWrite) return {0, Status::kAgain};
    if (r.io == tls::Io::kClosed) {
      error_ = "the broker closed the connection (EOF)";
      return {0, Status::kEof};
    }
    error_ = tls_->error();
    return {0, Status::kError};
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, len, MSG_DONTWAIT);
    if (n > 0) return {static_cast<size_t>(n), Status::kOk};
    if (n == 0) {
      error_ = "the broker closed the connection (EOF)";
      return {0, Status::kEof};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {0, Status::kAgain};
    error_ = std::string("recv: ") + std::strerror(errno);
    return {0, Status::kError};
  }
}

bool BrokerSocket::wait(bool for_write, Clock::time_point deadline) const {
  for (;;) {
    pollfd p{fd_, static_cast<short>(POLLIN | (for_write ? POLLOUT : 0)), 0};
    const int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

void BrokerSocket::shutdown() {
  if (tls_) tls_->shutdown();
}

}  // namespace tern::detail
