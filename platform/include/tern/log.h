// Minimal structured logging to stderr: one line per event.
#pragma once

#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace tern::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// What a line looks like: kJson, one JSON object per line (the default when
// stderr is not a terminal), or kText for people (the default on one).
// TERN_LOG_FORMAT (json, text) chooses at start-up.
enum class Format { kJson, kText };

// Level below which lines are dropped; from TERN_LOG_LEVEL (debug, info,
// warn, error; default info). Thread-safe.
Level threshold();
// Names the process in every line (a service sets its own name).
void set_process_name(std::string_view name);
void write(Level level, std::string_view message);
// The format lines are written in now, and a switch of every later line to
// `format`: for tests that read the process's own lines, and tools that
// print for people whatever stderr is. Thread-safe.
Format format();
void set_format(Format format);

template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (threshold() <= Level::kDebug) write(Level::kDebug, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (threshold() <= Level::kInfo) write(Level::kInfo, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (threshold() <= Level::kWarn) write(Level::kWarn, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  write(Level::kError, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace tern::log
