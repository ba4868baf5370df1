#include "observability/log_line.h"

#include <fmt/format.h>

#include <ctime>
#include <iterator>

#include "tern/context.h"
#include "tern/json.h"

namespace tern::log::detail {
namespace {

constexpr std::string_view kJsonLevels[] = {"debug", "info", "warn", "error"};
constexpr std::string_view kTextLevels[] = {"DEBUG", "INFO", "WARN", "ERROR"};

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
  line->span_id = ctx.span_id();
  if (!ctx.request_id().empty()) {
    line->request_id = ctx.request_id();
  } else if (auto it = ctx.metadata().find("request_id"); it != ctx.metadata().end()) {
    line->request_id = it->second;
  }
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
  json::append_quoted(line.service, out);
  if (!line.trace_id.empty()) {
    out->append(R"(,"trace_id":)");
    json::append_quoted(line.trace_id, out);
  }
  if (!line.span_id.empty()) {
    out->append(R"(,"span_id":)");
    json::append_quoted(line.span_id, out);
  }
  if (!line.request_id.empty()) {
    out->append(R"(,"request_id":)");
    json::append_quoted(line.request_id, out);
  }
  out->append(R"(,"msg":)");
  json::append_quoted(line.message, out);
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
    if (!line.span_id.empty()) {
      out->append(" span=");
      out->append(line.span_id.substr(0, 8));
    }
    out->push_back(']');
  }
  out->push_back('\n');
}

}  // namespace tern::log::detail
