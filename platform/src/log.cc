#include "tern/log.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include <fmt/chrono.h>

namespace tern::log {
namespace {

Level level_from_env() {
  const char* v = std::getenv("TERN_LOG_LEVEL");
  if (v == nullptr) return Level::kInfo;
  std::string_view s = v;
  if (s == "debug") return Level::kDebug;
  if (s == "warn") return Level::kWarn;
  if (s == "error") return Level::kError;
  return Level::kInfo;
}

std::mutex& mu() {
  static std::mutex m;
  return m;
}
std::string& process_name() {
  static std::string name;
  return name;
}

constexpr std::string_view kLevelNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};

}  // namespace

Level threshold() {
  static const Level level = level_from_env();
  return level;
}

void set_process_name(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu());
  process_name() = std::string(name);
}

void write(Level level, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::lock_guard<std::mutex> lock(mu());
  std::string line = fmt::format("{:%H:%M:%S}.{:03d} {:<5} {}: {}\n",
                                 fmt::localtime(std::chrono::system_clock::to_time_t(now)), ms,
                                 kLevelNames[static_cast<int>(level)],
                                 process_name().empty() ? "tern" : process_name(), message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace tern::log
