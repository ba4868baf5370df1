#include "http/http_io.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "core/percent.h"

namespace tern::detail {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// A header name's bytes: tchar (RFC 9110 section 5.6.2).
bool token_char(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}
// A value's bytes: visible, space, tab, or obs-text; no CR, LF, NUL or
// other control byte (RFC 9110 section 5.5), so no bare LF either.
bool value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

constexpr size_t kMaxHeaders = 100;

// Splits the header block after the start line into headers; false if a
// line is not "name: value" with a token for a name and a clean value, or
// there are more than kMaxHeaders.
bool parse_headers(std::string_view block, std::vector<http::Header>* out) {
  while (!block.empty()) {
    size_t eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view{} : block.substr(eol + 2);
    if (line.empty()) continue;
    // obs-fold, a line continued with SP or HTAB: refused (RFC 9112 section 5.2).
    if (line.front() == ' ' || line.front() == '\t') return false;
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return false;
    std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!token_char(static_cast<unsigned char>(c))) return false;
    std::string_view value = line.substr(colon + 1);
    for (char c : value)
      if (!value_char(static_cast<unsigned char>(c))) return false;
    if (out->size() >= kMaxHeaders) return false;
    out->push_back({std::string(name), std::string(trim(value))});
  }
  return true;
}

// request-line = method SP request-target SP HTTP-version (RFC 9112
// section 3), strictly: a token for the method, one SP each side of the
// target, a target of visible ASCII in origin form ("/...", or "*" for
// OPTIONS; absolute and authority forms are refused), and HTTP/1.1 or
// HTTP/1.0. Another HTTP/x.y is kVersionNotSupported (505).
ReadFailure parse_request_line(std::string_view line, http::Request* out, bool* http10) {
  const size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return ReadFailure::kMalformed;
  const std::string_view method = line.substr(0, sp1);
  for (char c : method)
    if (!token_char(static_cast<unsigned char>(c))) return ReadFailure::kMalformed;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return ReadFailure::kMalformed;
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || !version.starts_with("HTTP/") || !digit(version[5]) || version[6] != '.' ||
      !digit(version[7]))
    return ReadFailure::kMalformed;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return ReadFailure::kVersionNotSupported;
  *http10 = version == "HTTP/1.0";
  if (target.empty()) return ReadFailure::kMalformed;
  for (unsigned char c : target)
    if (c <= 0x20 || c >= 0x7f) return ReadFailure::kMalformed;   // no space, control or non-ASCII byte
  out->method.assign(method);
  if (target == "*" && method == "OPTIONS") {
    out->path = "*";
    out->query.clear();
    return ReadFailure::kNone;
  }
  if (target.front() != '/') return ReadFailure::kMalformed;
  const size_t q = target.find('?');
  out->query.assign(q == std::string_view::npos ? std::string_view{} : target.substr(q + 1));
  if (!percent_decode(target.substr(0, q), false, &out->path)) return ReadFailure::kMalformed;
  return ReadFailure::kNone;
}

// Waits until the buffer holds a whole head ("\r\n\r\n"); returns its length
// including the blank line, or 0 with *failure set.
size_t read_head(Socket& s, const Limits& limits, Clock::time_point first_byte_by,
                 Clock::time_point deadline, ReadFailure* failure) {
  size_t searched = 0;
  for (;;) {
    size_t end = s.buffer_.find("\r\n\r\n", searched > 3 ? searched - 3 : 0);
    if (end != std::string::npos) {
      if (end + 4 > limits.max_header_bytes) break;
      return end + 4;
    }
    searched = s.buffer_.size();
    if (searched > limits.max_header_bytes) break;
    if (!s.read_some(s.buffer_.empty() ? first_byte_by : deadline)) {
      if (s.buffer_.empty()) *failure = ReadFailure::kClosed;
      else *failure = s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kMalformed;
      return 0;
    }
  }
  *failure = ReadFailure::kHeadTooLarge;
  return 0;
}

// Reads a body framed by Content-Length, chunked encoding, or (responses
// only, `until_close`) the end of the connection.
ReadFailure read_body(Socket& s, const std::vector<http::Header>& headers, const Limits& limits,
                      Clock::time_point deadline, bool until_close, std::string* body) {
  // Ambiguous framing is how requests are smuggled past a proxy: two
  // Content-Lengths, two Transfer-Encodings, or both kinds (RFC 9112
  // section 6.3) are refused, never guessed at.
  size_t lengths = 0, encodings = 0;
  for (const http::Header& h : headers) {
    if (iequals(h.name, "Content-Length")) ++lengths;
    if (iequals(h.name, "Transfer-Encoding")) ++encodings;
  }
  if (lengths > 1 || encodings > 1 || (lengths > 0 && encodings > 0)) return ReadFailure::kMalformed;
  const std::string* te = http::find_header(headers, "Transfer-Encoding");
  if (te != nullptr && !iequals(*te, "identity")) {
    if (!iequals(trim(*te), "chunked")) return ReadFailure::kMalformed;
    size_t pos = 0;
    for (;;) {
      size_t eol;
      while ((eol = s.buffer_.find("\r\n", pos)) == std::string::npos) {
        if (s.buffer_.size() - pos > 1024) return ReadFailure::kMalformed;
        if (!s.read_some(deadline)) return s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kMalformed;
      }
      std::string_view size_line = std::string_view(s.buffer_).substr(pos, eol - pos);
      size_line = size_line.substr(0, size_line.find(';'));
      while (!size_line.empty() && (size_line.back() == ' ' || size_line.back() == '\t')) size_line.remove_suffix(1);
      // chunk-size = 1*HEXDIG (RFC 9112 section 7.1): all of it, and no
      // number that overflows ("5zz", "fffffffffffffffff" are refused).
      size_t size = 0;
      auto [p, ec] = std::from_chars(size_line.data(), size_line.data() + size_line.size(), size, 16);
      if (ec != std::errc{} || p == size_line.data() || p != size_line.data() + size_line.size())
        return ReadFailure::kMalformed;
      if (size > limits.max_body_bytes - body->size()) return ReadFailure::kBodyTooLarge;
      pos = eol + 2;
      if (size == 0) {
        // Trailers, up to the blank line: all of them within max_header_bytes.
        const size_t trailers_from = pos;
        size_t end;
        while ((end = s.buffer_.find("\r\n", pos)) == std::string::npos || end != pos) {
          if (end != std::string::npos) {
            pos = end + 2;
            if (pos - trailers_from > limits.max_header_bytes) return ReadFailure::kHeadTooLarge;
            continue;
          }
          if (s.buffer_.size() - trailers_from > limits.max_header_bytes) return ReadFailure::kHeadTooLarge;
          if (!s.read_some(deadline)) return s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kMalformed;
        }
        s.buffer_.erase(0, pos + 2);
        return ReadFailure::kNone;
      }
      while (s.buffer_.size() < pos + size + 2)
        if (!s.read_some(deadline)) return s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kMalformed;
      body->append(s.buffer_, pos, size);
      if (s.buffer_.compare(pos + size, 2, "\r\n") != 0) return ReadFailure::kMalformed;
      pos += size + 2;
      if (pos > 64 * 1024) {
        s.buffer_.erase(0, pos);
        pos = 0;
      }
    }
  }
  const std::string* cl = http::find_header(headers, "Content-Length");
  if (cl == nullptr) {
    if (!until_close) return ReadFailure::kNone;
    while (s.read_some(deadline))
      if (s.buffer_.size() > limits.max_body_bytes) return ReadFailure::kBodyTooLarge;
    if (s.timed_out()) return ReadFailure::kTimeout;
    // In TLS, only a close_notify ends the body: a bare TCP close could be
    // anyone on the path cutting it short.
    if (s.is_tls() && !s.eof()) return ReadFailure::kMalformed;
    body->swap(s.buffer_);
    s.buffer_.clear();
    return ReadFailure::kNone;
  }
  size_t length = 0;
  std::string_view v = trim(*cl);
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), length);
  if (ec != std::errc{} || p != v.data() + v.size()) return ReadFailure::kMalformed;
  if (length > limits.max_body_bytes) return ReadFailure::kBodyTooLarge;
  while (s.buffer_.size() < length)
    if (!s.read_some(deadline)) return s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kMalformed;
  body->assign(s.buffer_, 0, length);
  s.buffer_.erase(0, length);
  return ReadFailure::kNone;
}

}  // namespace

ReadFailure read_request(Socket& s, const Limits& limits, Clock::time_point first_byte_by,
                         std::chrono::milliseconds read_timeout, http::Request* out) {
  ReadFailure failure = ReadFailure::kNone;
  // The request's time starts with its first byte.
  Clock::time_point deadline = Clock::now() + read_timeout;
  if (s.buffer_.empty()) {
    if (!s.read_some(first_byte_by)) return ReadFailure::kClosed;
    deadline = Clock::now() + read_timeout;
  }
  // At least one empty line before the request line is to be ignored
  // (RFC 9112 section 2.2); any number, within the head's limit.
  size_t blank = 0;
  while (s.buffer_.starts_with("\r\n") || s.buffer_ == "\r") {
    if (s.buffer_ == "\r") {
      if (!s.read_some(deadline)) return s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kMalformed;
      continue;
    }
    s.buffer_.erase(0, 2);
    if ((blank += 2) > limits.max_header_bytes) return ReadFailure::kHeadTooLarge;
    // Only empty lines, then the end: no request was started.
    if (s.buffer_.empty() && !s.read_some(deadline))
      return s.timed_out() ? ReadFailure::kTimeout : ReadFailure::kClosed;
  }
  size_t head = read_head(s, limits, first_byte_by, deadline, &failure);
  if (head == 0) return failure;
  std::string_view h(s.buffer_.data(), head - 4);
  size_t eol = h.find("\r\n");
  bool http10 = false;
  if (ReadFailure f = parse_request_line(h.substr(0, eol), out, &http10); f != ReadFailure::kNone) return f;
  out->headers.clear();
  if (eol != std::string_view::npos && !parse_headers(h.substr(eol + 2), &out->headers))
    return ReadFailure::kMalformed;
  // RFC 9112 section 3.2: an HTTP/1.1 request has one Host, HTTP/1.0 at
  // most one, and its value is a host[:port] (no space, comma or slash).
  int hosts = 0;
  for (const auto& [name, value] : out->headers) {
    if (!iequals(name, "Host")) continue;
    if (++hosts > 1 || value.find_first_of(" \t,/@") != std::string::npos) return ReadFailure::kMalformed;
  }
  if (hosts == 0 && !http10) return ReadFailure::kMalformed;
  // HTTP/1.0 closes unless asked; HTTP/1.1 keeps alive unless asked. The
  // version is kept as a pseudo-header for the server loop.
  if (http10) out->headers.push_back({":version", "1.0"});
  s.buffer_.erase(0, head);

  const std::string* expect = out->header("Expect");
  if (expect != nullptr && iequals(*expect, "100-continue")) {
    const std::string* cl = out->header("Content-Length");
    size_t length = 0;
    if (cl != nullptr) std::from_chars(cl->data(), cl->data() + cl->size(), length);
    if (length > limits.max_body_bytes) return ReadFailure::kBodyTooLarge;
    if (!s.write_all("HTTP/1.1 100 Continue\r\n\r\n", deadline)) return ReadFailure::kClosed;
  }
  out->body.clear();
  return read_body(s, out->headers, limits, deadline, false, &out->body);
}

ReadFailure read_response(Socket& s, const Limits& limits, Clock::time_point deadline,
                          http::Response* out) {
  for (;;) {
    ReadFailure failure = ReadFailure::kNone;
    size_t head = read_head(s, limits, deadline, deadline, &failure);
    if (head == 0) return failure == ReadFailure::kClosed ? ReadFailure::kMalformed : failure;
    std::string_view h(s.buffer_.data(), head - 4);
    size_t eol = h.find("\r\n");
    std::string_view start = h.substr(0, eol);
    // HTTP/1.1 SP STATUS SP REASON
    if (!start.starts_with("HTTP/1.") || start.size() < 12) return ReadFailure::kMalformed;
    int status = 0;
    auto [p, ec] = std::from_chars(start.data() + 9, start.data() + 12, status);
    if (ec != std::errc{} || status < 100 || status > 999) return ReadFailure::kMalformed;
    out->status = status;
    out->headers.clear();
    if (eol != std::string_view::npos && !parse_headers(h.substr(eol + 2), &out->headers))
      return ReadFailure::kMalformed;
    s.buffer_.erase(0, head);
    if (status >= 100 && status < 200) continue;   // 100 Continue and friends
    out->body.clear();
    if (status == 204 || status == 304) return ReadFailure::kNone;
    return read_body(s, out->headers, limits, deadline, true, &out->body);
  }
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize(const http::Response& r, bool keep_alive) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", r.status, reason_phrase(r.status));
  for (const auto& h : r.headers) {
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Connection") ||
        iequals(h.name, "Transfer-Encoding"))
      continue;
    out += fmt::format("{}: {}\r\n", h.name, h.value);
  }
  out += fmt::format("Content-Length: {}\r\n", r.body.size());
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  out += r.body;
  return out;
}

std::string serialize(const http::Request& r, std::string_view host) {
  std::string out = fmt::format("{} {}{}{} HTTP/1.1\r\nHost: {}\r\n", r.method,
                                r.path.empty() ? "/" : r.path, r.query.empty() ? "" : "?", r.query, host);
  bool user_agent = false;
  for (const auto& h : r.headers) {
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Connection") || iequals(h.name, "Host") ||
        iequals(h.name, "Transfer-Encoding"))
      continue;
    user_agent = user_agent || iequals(h.name, "User-Agent");
    out += fmt::format("{}: {}\r\n", h.name, h.value);
  }
  if (!user_agent) out += "User-Agent: tern\r\n";
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
    out += fmt::format("Content-Length: {}\r\n", r.body.size());
  out += "Connection: close\r\n\r\n";
  out += r.body;
  return out;
}

}  // namespace tern::detail

namespace tern::http {

const std::string* find_header(const std::vector<Header>& headers, std::string_view name) {
  for (const auto& h : headers)
    if (detail::iequals(h.name, name)) return &h.value;
  return nullptr;
}

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = std::move(body);
  return r;
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string key, value;
    if (!detail::percent_decode(part.substr(0, eq), true, &key)) continue;
    if (eq != std::string_view::npos && !detail::percent_decode(part.substr(eq + 1), true, &value))
      continue;
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

}  // namespace tern::http
