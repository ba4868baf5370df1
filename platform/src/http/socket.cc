#include "http/socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace tern::detail {
Socket::Socket(Reactor& loop, int fd) : loop_(loop), fd_(fd) {}

Socket::~Socket() {
  if (tls_ != nullptr) {
    // close_notify, if the session is sound: it tells the peer the stream
    // ended here, not cut (best effort, never waited for).
    if (!tls_failed_) tls_->shutdown();
    tls_.reset();
  }
  if (fd_ >= 0) {
    loop_.cancel_waits(fd_);
    ::close(fd_);
  }
}

bool Socket::wait(short events, Clock::time_point deadline, bool hangup_fails) {
  const short ev = loop_.wait_fd(fd_, events, deadline);
  if (ev == 0) {
    timed_out_ = Clock::now() >= deadline;
    return false;
  }
  return !(hangup_fails && (ev & (POLLERR | POLLHUP)) != 0);
}

bool Socket::start_tls(std::shared_ptr<tls::Context> ctx, std::string_view server_name,
                       Clock::time_point deadline) {
  tls_ = std::make_unique<tls::Session>(std::move(ctx), fd_, server_name);
  for (;;) {
    switch (tls_->handshake()) {
      case tls::Io::kOk:
        return true;
      case tls::Io::kWantRead:
        if (!wait(POLLIN, deadline, false)) break;
        continue;
      case tls::Io::kWantWrite:
        if (!wait(POLLOUT, deadline, true)) break;
        continue;
      default:
        break;
    }
    tls_failed_ = true;
    return false;
  }
}

const std::string& Socket::tls_error() const {
  static const std::string kNone;
  return tls_ != nullptr ? tls_->error() : kNone;
}

tls::Session::Refusal Socket::certificate_refused() const {
  return tls_ != nullptr ? tls_->certificate_refused() : tls::Session::Refusal::kNone;
}

bool Socket::read_some(Clock::time_point deadline) {
  if (tls_ != nullptr) return tls_read(deadline);
  char chunk[16 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (!wait(POLLIN, deadline, false)) return false;
  }
}

namespace {

// Reads from the session straight into the end of `buffer`: no chunk on
// the fiber's stack, which OpenSSL's own frames already use.
tls::Session::Result read_into(tls::Session& session, std::string& buffer) {
  constexpr size_t kChunk = 16 * 1024;   // a TLS record's most
  const size_t had = buffer.size();
  buffer.resize(had + kChunk);
  const tls::Session::Result r = session.read(buffer.data() + had, kChunk);
  buffer.resize(had + (r.io == tls::Io::kOk ? r.n : 0));
  return r;
}

}  // namespace

bool Socket::tls_read(Clock::time_point deadline) {
  for (;;) {
    const tls::Session::Result r = read_into(*tls_, buffer_);
    switch (r.io) {
      case tls::Io::kOk:
        // Bytes the session decrypted but did not return: the fd will not
        // wake for them, so take them now.
        while (tls_->pending() && read_into(*tls_, buffer_).io == tls::Io::kOk) {
        }
        return true;
      case tls::Io::kWantRead:
        if (!wait(POLLIN, deadline, false)) return false;
        continue;
      case tls::Io::kWantWrite:
        if (!wait(POLLOUT, deadline, true)) return false;
        continue;
      case tls::Io::kClosed:
        eof_ = true;
        return false;
      case tls::Io::kError:
        tls_failed_ = true;
        return false;
    }
  }
}

bool Socket::write_all(std::string_view data, Clock::time_point deadline) {
  if (tls_ != nullptr) return tls_write_all(data, deadline);
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (!wait(POLLOUT, deadline, true)) return false;
  }
  return true;
}

bool Socket::tls_write_all(std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    // After a want, the same bytes again (data only moves on success).
    const tls::Session::Result r = tls_->write(data.data(), data.size());
    switch (r.io) {
      case tls::Io::kOk:
        data.remove_prefix(r.n);
        continue;
      case tls::Io::kWantRead:
        if (!wait(POLLIN, deadline, false)) return false;
        continue;
      case tls::Io::kWantWrite:
        if (!wait(POLLOUT, deadline, true)) return false;
        continue;
      case tls::Io::kClosed:
      case tls::Io::kError:
        tls_failed_ = true;
        return false;
    }
  }
  return true;
}

}  // namespace tern::detail
