#include "passwords.h"

#include <fmt/format.h>

#include <charconv>

#include "common/crypto.h"

namespace auth {
namespace {
constexpr std::string_view kScheme = "pbkdf2-sha256$";
}

PasswordHash PasswordHash::make(std::string_view password, int iterations) {
  PasswordHash h;
  h.iterations = iterations;
  h.salt = *common::from_hex(common::random_hex(16));
  h.hash = common::pbkdf2_sha256(password, h.salt, iterations);
  return h;
}

std::optional<PasswordHash> PasswordHash::parse(std::string_view text) {
  if (!text.starts_with(kScheme)) return std::nullopt;
  text.remove_prefix(kScheme.size());
  const size_t a = text.find('$');
  const size_t b = a == std::string_view::npos ? a : text.find('$', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  PasswordHash h;
  const std::string_view count = text.substr(0, a);
  if (auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), h.iterations);
      ec != std::errc{} || end != count.data() + count.size() || h.iterations < 1000 || h.iterations > 100000000)
    return std::nullopt;
  auto salt = common::from_hex(text.substr(a + 1, b - a - 1));
  auto hash = common::from_hex(text.substr(b + 1));
  if (!salt || !hash || salt->size() < 8 || hash->size() != 32) return std::nullopt;
  h.salt = std::move(*salt);
  h.hash = std::move(*hash);
  return h;
}

std::string PasswordHash::to_string() const {
  return fmt::format("{}{}${}${}", kScheme, iterations, common::to_hex(salt), common::to_hex(hash));
}

bool PasswordHash::matches(std::string_view password) const {
  return common::equal_constant_time(common::pbkdf2_sha256(password, salt, iterations), hash);
}

}  // namespace auth
