// libFuzzer: the HTTP/1.1 parser of http/http_io.h, read_request (request
// line, headers, Content-Length and chunked bodies, trailers) and
// read_response, over bytes the fuzzer chose. The bytes reach the parser
// through a real Socket: a SOCK_SEQPACKET socketpair keeps each write a read
// of its own, so the input's first byte also picks how the rest is cut into
// reads, as a slow client's segments would be. No socket seam in the code.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

#include "http/http_io.h"

using namespace tern::detail;

namespace {

bool token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || std::string_view("\"(),/:;<=>?@[\\]{}").find(c) != std::string_view::npos)
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Reactor* loop = new Reactor(64 * 1024);   // never waited on: every read is ready or EOF
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) != 0) abort();
  const size_t pieces = (mode & 7) + 1;
  const size_t piece = in.size() / pieces + 1;
  for (size_t at = 0; at < in.size(); at += piece) {
    const size_t n = std::min(piece, in.size() - at);
    if (send(fds[0], in.data() + at, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) abort();
  }
  close(fds[0]);   // then EOF; a 100 Continue written back fails, as to a gone client
  Socket s(*loop, fds[1]);
  // Small limits, so that the fuzzer reaches their edges.
  const Limits limits{512, 2048};
  const auto by = Clock::now() + std::chrono::seconds(5);
  if (mode & 0x80) {
    tern::http::Response resp;
    if (read_response(s, limits, by, &resp) == ReadFailure::kNone) {
      if (resp.status < 100 || resp.status > 999 || resp.body.size() > limits.max_body_bytes) abort();
    }
    return 0;
  }
  // A kept-alive connection: requests one after another until one fails.
  for (int i = 0; i < 16; ++i) {
    tern::http::Request req;
    if (read_request(s, limits, by, std::chrono::seconds(5), &req) != ReadFailure::kNone) break;
    // What a handler may rely on of an accepted request.
    if (!token(req.method) || req.body.size() > limits.max_body_bytes) abort();
    if (req.path != "*" && !req.path.starts_with('/')) abort();
    if (req.headers.size() > 101) abort();
    for (const auto& h : req.headers) {
      if (h.name != ":version" && !token(h.name)) abort();
      for (unsigned char c : h.value)
        if (c == '\r' || c == '\n' || c == 0) abort();
    }
  }
  return 0;
}
