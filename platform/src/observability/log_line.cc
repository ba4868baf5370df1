#include "observability/log_line.h"

#include <fmt/format.h>

#include <ctime>
#include <iterator>

#include "tern/context.h"

namespace tern::log::detail {
namespace {

constexpr std::string_view kJsonLevels[] = {"debug", "info", "warn", "error"};
constexpr std::string_view kTextLevels[] = {"DEBUG", "INFO", "WARN", "ERROR"};

// The length of the well-formed UTF-8 sequence (RFC 3629) starting at s[i],
// a non-ASCII byte; 0 if there is none.
size_t utf8_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = byte(i);
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;  // no overlong forms
    if (b == 0xED) hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

int level_index(Level level) {
  const int i = static_cast<int>(level);
  return i < 0 ? 0 : i > 3 ? 3 : i;
}

}  // namespace

std::optional<Format> parse_format(std::string_view s) {
  if (s == "json") return Format::kJson;
  if (s == "text") return Format::kText;
  return std::nullopt;
}

std::optional<Level> parse_level(std::string_view s) {
  if (s == "debug") return Level::kDebug;
  if (s == "info") return Level::kInfo;
  if (s == "warn") return Level::kWarn;
  if (s == "error") return Level::kError;
  return std::nullopt;
}

void add_context(const Context& ctx, Line* line) {
  line->trace_id = ctx.trace_id();
  if (!ctx.request_id().empty()) {
    line->request_id = ctx.request_id();
  } else if (auto it = ctx.metadata().find("request_id"); it != ctx.metadata().end()) {
    line->request_id = it->second;
  }
}

void append_json_string(std::string_view s, std::string* out) {
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (size_t n = utf8_length(s, i); n > 0) {
        out->append(s.substr(i, n));
        i += n;
      } else {
        out->append("\\ufffd");
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          fmt::format_to(std::back_inserter(*out), "\\u{:04x}", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void append_json(const Line& line, std::string* out) {
  const auto since_epoch = line.time.time_since_epoch();
  const std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
  std::tm utc{};
  gmtime_r(&secs, &utc);
  fmt::format_to(
      std::back_inserter(*out),
      R"({{"time":"{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z","level":"{}","service":)",
      utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
      static_cast<int>(ms), kJsonLevels[level_index(line.level)]);
  append_json_string(line.service, out);
  if (!line.trace_id.empty()) {
    out->append(R"(,"trace_id":)");
    append_json_string(line.trace_id, out);
  }
  if (!line.request_id.empty()) {
    out->append(R"(,"request_id":)");
    append_json_string(line.request_id, out);
  }
  out->append(R"(,"msg":)");
  append_json_string(line.message, out);
  out->append("}\n");
}

void append_text(const Line& line, std::string* out, size_t* level_begin, size_t* level_end) {
  const auto since_epoch = line.time.time_since_epoch();
  const std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
  std::tm local{};
  localtime_r(&secs, &local);
  fmt::format_to(std::back_inserter(*out), "{:02d}:{:02d}:{:02d}.{:03d} ", local.tm_hour,
                 local.tm_min, local.tm_sec, static_cast<int>(ms));
  const std::string_view level = kTextLevels[level_index(line.level)];
  if (level_begin != nullptr) *level_begin = out->size();
  out->append(level);
  if (level_end != nullptr) *level_end = out->size();
  out->append(6 - level.size(), ' ');
  out->append(line.service);
  out->append(": ");
  out->append(line.message);
  if (!line.trace_id.empty()) {
    out->append(" [trace=");
    out->append(line.trace_id.substr(0, 8));
    out->push_back(']');
  }
  out->push_back('\n');
}

}  // namespace tern::log::detail
