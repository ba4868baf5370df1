// A TCP proxy on loopback between a tern runtime and the broker, for the
// heartbeat tests: it parses the AMQP frames the client sends (counting
// heartbeat frames and frames that do not end where their header says),
// and can freeze: stop reading and writing both ways, the sockets kept open,
// so neither side gets a FIN or a RST (a frozen peer, a half-open link).
// Loopback only. One thread of its own.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

class FrameProxy {
 public:
  using Clock = std::chrono::steady_clock;

  // Forwards 127.0.0.1:port() to 127.0.0.1:upstream_port.
  explicit FrameProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(listen_fd_, 16) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("FrameProxy: cannot listen");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FrameProxy() {
    stop_ = true;
    thread_.join();
    for (Pair& p : pairs_) {
      close(p.client);
      close(p.broker);
    }
    close(listen_fd_);
  }
  FrameProxy(const FrameProxy&) = delete;
  FrameProxy& operator=(const FrameProxy&) = delete;

  int port() const { return port_; }
  // Frozen: nothing is read or written either way (new connections wait
  // in the backlog). Thawed: forwarding goes on where it stopped.
  void freeze(bool on) { frozen_ = on; }

  // Heartbeat frames the clients sent, and when.
  std::vector<Clock::time_point> client_heartbeats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return heartbeats_;
  }
  // Frames from a client that did not end with the frame-end octet where
  // their size said: something was written into the middle of a frame.
  int broken_frames() const { return broken_.load(); }
  // Whole frames the clients sent (heartbeats included).
  int64_t client_frames() const { return frames_.load(); }

 private:
  // The client's side of one connection, parsed as it passes.
  struct Parser {
    size_t header_left = 8;  // "AMQP" 0 0 9 1
    std::string head;        // the 7 bytes of the frame header being read
    uint64_t payload_left = 0;
    bool in_payload = false, want_end = false, lost = false;
  };
  struct Pair {
    int client, broker;
    Parser parser;
    bool eof[2] = {false, false};  // client / broker sent its FIN
  };

  void parse(Parser& p, const char* data, size_t n) {
    for (size_t i = 0; i < n && !p.lost;) {
      if (p.header_left > 0) {
        const size_t k = std::min(p.header_left, n - i);
        p.header_left -= k;
        i += k;
      } else if (p.want_end) {
        if (static_cast<uint8_t>(data[i]) != 0xCE) {
          ++broken_;
          p.lost = true;   // the stream cannot be followed further
        }
        ++frames_;
        p.want_end = false;
        ++i;
      } else if (p.in_payload) {
        const size_t k = static_cast<size_t>(std::min<uint64_t>(p.payload_left, n - i));
        p.payload_left -= k;
        i += k;
        if (p.payload_left == 0) p.in_payload = false, p.want_end = true;
      } else {
        p.head.push_back(data[i++]);
        if (p.head.size() < 7) continue;
        const auto* h = reinterpret_cast<const uint8_t*>(p.head.data());
        const uint32_t size = (uint32_t{h[3]} << 24) | (uint32_t{h[4]} << 16) | (uint32_t{h[5]} << 8) | h[6];
        if (h[0] == 8) {
          std::lock_guard<std::mutex> lock(mu_);
          heartbeats_.push_back(Clock::now());
        }
        p.head.clear();
        p.payload_left = size;
        p.in_payload = size > 0;
        p.want_end = size == 0;
      }
    }
  }

  void accept_one() {
    const int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    const int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    if (b < 0 || connect(b, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(c);
      if (b >= 0) close(b);
      return;
    }
    pairs_.push_back({c, b, {}, {false, false}});
  }

  static bool send_all(int fd, const char* data, size_t n) {
    while (n > 0) {
      const ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
      if (k <= 0) return false;
      data += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }

  void run() {
    std::vector<char> buf(256 * 1024);
    while (!stop_) {
      if (frozen_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (const Pair& p : pairs_) {
        fds.push_back({p.eof[0] ? -1 : p.client, POLLIN, 0});
        fds.push_back({p.eof[1] ? -1 : p.broker, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 10) <= 0) continue;
      if (fds[0].revents & POLLIN) accept_one();
      for (size_t i = 0; i < pairs_.size() && !frozen_; ++i) {
        Pair& p = pairs_[i];
        for (int side = 0; side < 2; ++side) {
          if ((fds[1 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          const int from = side == 0 ? p.client : p.broker, to = side == 0 ? p.broker : p.client;
          const ssize_t n = recv(from, buf.data(), buf.size(), MSG_DONTWAIT);
          if (n > 0) {
            if (side == 0) parse(p.parser, buf.data(), static_cast<size_t>(n));
            send_all(to, buf.data(), static_cast<size_t>(n));
          } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            shutdown(to, SHUT_WR);   // pass the FIN on
            p.eof[side] = true;
          }
        }
      }
    }
  }

  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, frozen_{false};
  std::vector<Pair> pairs_;   // the proxy thread's
  mutable std::mutex mu_;
  std::vector<Clock::time_point> heartbeats_;
  std::atomic<int> broken_{0};
  std::atomic<int64_t> frames_{0};
  std::thread thread_;   // last: it starts once the rest is built
};
