#include "tern/env.h"

#include <charconv>
#include <cstdlib>
#include <mutex>

#include <fmt/format.h>

namespace tern::env {
namespace {

// The variable's value; empty when unset.
std::string_view raw(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string_view{} : std::string_view{v};
}

std::mutex& reads_mu() {
  static std::mutex mu;
  return mu;
}
std::vector<Variable>& reads() {
  static std::vector<Variable> v;
  return v;
}
void note(const char* name, std::string fallback) {
  std::lock_guard<std::mutex> lock(reads_mu());
  for (const Variable& r : reads())
    if (r.name == name) return;
  reads().push_back({name, std::move(fallback)});
}

}  // namespace

std::vector<Variable> read_so_far() {
  std::lock_guard<std::mutex> lock(reads_mu());
  return reads();
}

int64_t parse_integer(std::string_view source, std::string_view text, int64_t min, int64_t max) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool digits = ec != std::errc::invalid_argument && end == text.data() + text.size();
  if (!digits) throw ConfigError(fmt::format("{}='{}' is not a number", source, text));
  if (ec == std::errc::result_out_of_range || v < min || v > max)
    throw ConfigError(fmt::format("{}='{}' is out of range {}..{}", source, text, min, max));
  return v;
}

std::string string(const char* name, std::string fallback) {
  note(name, fallback);
  const std::string_view v = raw(name);
  return v.empty() ? fallback : std::string(v);
}

int64_t integer(const char* name, int64_t fallback, int64_t min, int64_t max) {
  note(name, std::to_string(fallback));
  const std::string_view v = raw(name);
  return v.empty() ? fallback : parse_integer(name, v, min, max);
}

std::chrono::milliseconds duration_ms(const char* name, std::chrono::milliseconds fallback,
                                      std::chrono::milliseconds min, std::chrono::milliseconds max) {
  return std::chrono::milliseconds(integer(name, fallback.count(), min.count(), max.count()));
}

}  // namespace tern::env
