// The lines go through one spdlog logger to stderr; log_line.cc says what
// they look like.
#include "tern/log.h"

#include "tern/env.h"

#include <spdlog/formatter.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "observability/log_line.h"
#include "tern/context.h"

namespace tern::log {
namespace {

// TERN_LOG_LEVEL and TERN_LOG_FORMAT, read once.
struct Settings {
  Level level = Level::kInfo;
  Format format = Format::kJson;
  std::string bad_level;   // an unknown TERN_LOG_LEVEL, warned about once
  std::string bad_format;  // likewise TERN_LOG_FORMAT
};

Settings read_settings() {
  Settings s;
  s.format = isatty(STDERR_FILENO) ? Format::kText : Format::kJson;
  // Through tern::env, so a service's --help lists them.
  if (const std::string v = env::string("TERN_LOG_LEVEL", "info"); !v.empty()) {
    if (auto level = detail::parse_level(v))
      s.level = *level;
    else
      s.bad_level = v;
  }
  if (const std::string v = env::string("TERN_LOG_FORMAT", ""); !v.empty()) {
    if (auto format = detail::parse_format(v))
      s.format = *format;
    else
      s.bad_format = v;
  }
  return s;
}

const Settings& settings() {
  static const Settings s = read_settings();
  return s;
}

Level from_spdlog(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return Level::kDebug;
    case spdlog::level::info:
      return Level::kInfo;
    case spdlog::level::warn:
      return Level::kWarn;
    default:
      return Level::kError;
  }
}

spdlog::level::level_enum to_spdlog(Level l) {
  switch (l) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      break;
  }
  return spdlog::level::err;
}

// Formats a line in one of log_line.h's forms. spdlog calls it on the
// logging fiber (the logger is synchronous), so Context::current() is the
// context of the request that fiber handles.
class LineFormatter final : public spdlog::formatter {
 public:
  LineFormatter(Format format, std::string service)
      : format_(format), service_(std::move(service)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    detail::Line line;
    line.time = msg.time;
    line.level = from_spdlog(msg.level);
    line.service = service_;
    line.message = std::string_view(msg.payload.data(), msg.payload.size());
    if (const Context* ctx = Context::current()) detail::add_context(*ctx, &line);
    std::string out;
    if (format_ == Format::kJson) {
      detail::append_json(line, &out);
    } else {
      // Only the level is coloured, and only on a colour terminal (the sink decides).
      detail::append_text(line, &out, &msg.color_range_start, &msg.color_range_end);
    }
    dest.append(out.data(), out.data() + out.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(format_, service_);
  }

 private:
  const Format format_;
  const std::string service_;
};

// The one logger. Its formatter is replaced (under the sink's lock) when
// the process name or the format changes.
class Logger {
 public:
  Logger() : format_(settings().format) {
    auto sink =
        std::make_shared<spdlog::sinks::stderr_color_sink_mt>(spdlog::color_mode::automatic);
    logger_ = std::make_shared<spdlog::logger>("tern", std::move(sink));
    logger_->set_level(to_spdlog(settings().level));
    logger_->flush_on(spdlog::level::trace);
    install();
  }

  void write(Level level, std::string_view message) {
    // Before the first line, and so after a service has named itself.
    std::call_once(warned_, [this] { warn_about_settings(); });
    logger_->log(to_spdlog(level), spdlog::string_view_t(message.data(), message.size()));
  }
  void set_service(std::string_view name) {
    std::lock_guard<std::mutex> lock(mu_);
    service_ = std::string(name);
    install();
  }
  Format format() {
    std::lock_guard<std::mutex> lock(mu_);
    return format_;
  }
  void set_format(Format format) {
    std::lock_guard<std::mutex> lock(mu_);
    format_ = format;
    install();
  }

 private:
  void warn_about_settings() {
    if (!settings().bad_level.empty())
      logger_->warn("TERN_LOG_LEVEL={} is not one of debug, info, warn, error: using info",
                    settings().bad_level);
    if (!settings().bad_format.empty())
      logger_->warn("TERN_LOG_FORMAT={} is not json or text: using {}", settings().bad_format,
                    settings().format == Format::kJson ? "json" : "text");
  }
  void install() { logger_->set_formatter(std::make_unique<LineFormatter>(format_, service_)); }

  std::once_flag warned_;
  std::mutex mu_;  // guards format_ and service_, and orders installs
  Format format_;
  std::string service_ = "tern";
  std::shared_ptr<spdlog::logger> logger_;
};

Logger& logger() {
  static Logger l;
  return l;
}

}  // namespace

Level threshold() { return settings().level; }

void set_process_name(std::string_view name) { logger().set_service(name.empty() ? "tern" : name); }

void write(Level level, std::string_view message) { logger().write(level, message); }

Format format() { return logger().format(); }

void set_format(Format format) { logger().set_format(format); }

}  // namespace tern::log
