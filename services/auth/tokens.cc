#include "tokens.h"

#include <charconv>
#include <stdexcept>

#include "common/crypto.h"

namespace auth {
namespace {

constexpr std::string_view kVersion = "v2.";

tern::Error unauthenticated(std::string why) {
  return tern::Error{tern::Code::kUnauthenticated, std::move(why)};
}

std::string mac(const Key& key, std::string_view signed_part) {
  return common::to_hex(common::hmac_sha256(key.secret, signed_part));
}

}  // namespace

Key::Key(std::string s) : id(common::to_hex(common::sha256("tern.auth.kid:" + s)).substr(0, 8)), secret(std::move(s)) {}

Tokens::Tokens(std::vector<Key> keys, std::chrono::seconds ttl) : keys_(std::move(keys)), ttl_(ttl) {
  if (keys_.empty()) throw std::invalid_argument("no signing key");
}

std::string Tokens::issue(std::string_view account_id, int64_t now_unix_ms) const {
  const int64_t expiry = now_unix_ms + std::chrono::milliseconds(ttl_).count();
  const Key& key = keys_.front();
  std::string signed_part(kVersion);
  signed_part += key.id + ".";
  signed_part += common::to_hex(std::string(account_id) + "\n" + std::to_string(expiry));
  return signed_part + "." + mac(key, signed_part);
}

tern::Result<Claims> Tokens::validate(std::string_view token, int64_t now_unix_ms) const {
  if (!token.starts_with(kVersion)) return unauthenticated("malformed token");
  const size_t id_end = token.find('.', kVersion.size());
  const size_t dot = token.rfind('.');
  if (id_end == std::string_view::npos || dot <= id_end) return unauthenticated("malformed token");
  const std::string_view id = token.substr(kVersion.size(), id_end - kVersion.size());
  const Key* key = nullptr;
  for (const Key& k : keys_)
    if (k.id == id) key = &k;
  if (key == nullptr) return unauthenticated("token signed with an unknown key");
  const std::string_view signed_part = token.substr(0, dot);
  if (!common::equal_constant_time(token.substr(dot + 1), mac(*key, signed_part)))
    return unauthenticated("invalid token");
  auto payload = common::from_hex(signed_part.substr(id_end + 1));
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
