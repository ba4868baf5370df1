// Internals of tern::http: a non-blocking socket read and written by one
// fiber, and HTTP/1.1 message parsing. Reactor thread only.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/reactor.h"
#include "tern/http.h"

namespace tern::detail {


// Owns a non-blocking socket; every wait parks the fiber in Reactor::wait_fd.
class Socket {
 public:
  Socket(Reactor& loop, int fd) : loop_(loop), fd_(fd) {}
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  // Appends what arrives to `buffer_`; false on EOF, error or deadline.
  bool read_some(Clock::time_point deadline);
  // Sends all of `data`; false on error or deadline.
  bool write_all(std::string_view data, Clock::time_point deadline);
  bool timed_out() const { return timed_out_; }

  std::string buffer_;   // bytes read and not yet consumed

 private:
  Reactor& loop_;
  int fd_;
  bool timed_out_ = false;
};

// Why reading a message failed; each maps to a status on the server side.
enum class ReadFailure { kNone, kClosed, kTimeout, kMalformed, kHeadTooLarge, kBodyTooLarge };

struct Limits {
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
};

// Reads one request (server side). `first_byte_by`: how long to wait for a
// request to start; `rest_by` is computed from read_timeout once it starts.
// If the client sent "Expect: 100-continue", answers it before the body.
ReadFailure read_request(Socket& s, const Limits& limits, Clock::time_point first_byte_by,
                         std::chrono::milliseconds read_timeout, http::Request* out);

// Reads one response (client side); `head_only` for replies to HEAD.
ReadFailure read_response(Socket& s, const Limits& limits, Clock::time_point deadline,
                          http::Response* out);

// The serialized status line, headers (with Content-Length) and body.
std::string serialize(const http::Response& r, bool keep_alive);
std::string serialize(const http::Request& r, std::string_view host);

std::string_view reason_phrase(int status);

}  // namespace tern::detail
