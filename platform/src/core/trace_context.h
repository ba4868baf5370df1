// W3C Trace Context (https://www.w3.org/TR/trace-context/): the traceparent
// header that carries a trace across HTTP, read by tern's HTTP server and
// written by http::fetch and by the server's responses.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern::detail {

struct TraceParent {
  std::string trace_id;    // 32 lowercase hex, not all zero
  std::string parent_id;   // 16 lowercase hex, not all zero: the caller's span
  bool sampled = false;    // flags bit 0
};

// The traceparent header's value parsed, or nothing if it is not one (then
// the header is ignored and a new trace starts, as the spec says). Accepts
// versions other than 00 the way the spec asks: their first four fields.
std::optional<TraceParent> parse_traceparent(std::string_view value);

// "00-<trace_id>-<span_id>-01", or empty if the ids are not in W3C form
// (a trace id a non-tern caller sent, say).
std::string format_traceparent(std::string_view trace_id, std::string_view span_id, bool sampled = true);

// A tracestate header worth passing on: at most 512 bytes of visible ASCII
// (the spec's limit); empty if not.
std::string_view valid_tracestate(std::string_view value);

}  // namespace tern::detail
