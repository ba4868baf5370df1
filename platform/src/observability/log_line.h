// What one log line looks like, apart from where it goes (log.cc): the JSON
// and text forms, as plain functions so that tests need not capture stderr.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "tern/log.h"

namespace tern {
class Context;
}

namespace tern::log::detail {

// Parses TERN_LOG_FORMAT / TERN_LOG_LEVEL values; nullopt for anything else.
std::optional<Format> parse_format(std::string_view s);
std::optional<Level> parse_level(std::string_view s);

// One line's contents. Empty trace_id / span_id / request_id are left out.
struct Line {
  std::chrono::system_clock::time_point time;
  Level level = Level::kInfo;
  std::string_view service;
  std::string_view message;
  std::string_view trace_id;
  std::string_view span_id;      // the span the line was logged in (a handler's: its server span)
  std::string_view request_id;
};

// The trace, span and request ids of `ctx` into `line`: request_id is the
// request's own id, else the "request_id" metadata the gateway sets.
void add_context(const Context& ctx, Line* line);

// {"time":"2026-11-26T08:10:43.123Z","level":"info","service":"...",
//  "trace_id":"...","span_id":"...","request_id":"...","msg":"..."} and a newline. Valid
// UTF-8 JSON for any bytes: the strings are written by tern::json::quote.
void append_json(const Line& line, std::string* out);

// "08:10:43.123 INFO  service: message [trace=1a2b3c4d]" and a newline, in
// local time, with the trace id cut to 8 characters. [*level_begin,
// *level_end) is where the level word is, for colouring it.
void append_text(const Line& line, std::string* out, size_t* level_begin = nullptr,
                 size_t* level_end = nullptr);

}  // namespace tern::log::detail
