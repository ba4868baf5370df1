#include "tokens.h"

#include <charconv>

#include "common/crypto.h"

namespace auth {
namespace {

constexpr std::string_view kVersion = "v1.";

tern::Error unauthenticated(std::string why) {
  return tern::Error{tern::Code::kUnauthenticated, std::move(why)};
}

}  // namespace

std::string Tokens::mac(std::string_view signed_part) const {
  return common::to_hex(common::hmac_sha256(secret_, signed_part));
}

std::string Tokens::issue(std::string_view account_id, int64_t now_unix_ms) const {
  const int64_t expiry = now_unix_ms + std::chrono::milliseconds(ttl_).count();
  std::string signed_part(kVersion);
  signed_part += common::to_hex(std::string(account_id) + "\n" + std::to_string(expiry));
  return signed_part + "." + mac(signed_part);
}

tern::Result<Claims> Tokens::validate(std::string_view token, int64_t now_unix_ms) const {
  if (!token.starts_with(kVersion)) return unauthenticated("malformed token");
  const auto dot = token.rfind('.');
  if (dot < kVersion.size()) return unauthenticated("malformed token");
  const std::string_view signed_part = token.substr(0, dot);
  if (!common::equal_constant_time(token.substr(dot + 1), mac(signed_part)))
    return unauthenticated("invalid token");
  auto payload = common::from_hex(signed_part.substr(kVersion.size()));
  const auto newline = payload ? payload->rfind('\n') : std::string::npos;
  if (newline == std::string::npos) return unauthenticated("malformed token");
  Claims claims;
  claims.account_id = payload->substr(0, newline);
  const char* first = payload->data() + newline + 1;
  const char* last = payload->data() + payload->size();
  if (auto [end, ec] = std::from_chars(first, last, claims.expires_at_unix_ms);
      ec != std::errc{} || end != last)
    return unauthenticated("malformed token");
  if (claims.expires_at_unix_ms <= now_unix_ms) return unauthenticated("token expired");
  return claims;
}

}  // namespace auth
