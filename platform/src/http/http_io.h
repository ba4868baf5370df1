// Internals of tern::http: HTTP/1.1 messages read from and written to a
// Socket (http/socket.h). Reactor thread only.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "http/socket.h"
#include "runtime/reactor.h"
#include "tern/http.h"

namespace tern::detail {

// Why reading a message failed; each maps to a status on the server side.
enum class ReadFailure {
  kNone, kClosed, kTimeout, kMalformed, kHeadTooLarge, kBodyTooLarge,
  kVersionNotSupported,   // a request line with an HTTP version other than 1.0 or 1.1
};

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
