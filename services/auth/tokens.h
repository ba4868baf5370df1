// Stateless bearer tokens: any instance of service.auth that has the secret
// validates a token any other issued, with no shared store.
#pragma once

#include <tern/error.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace auth {

struct Claims {
  std::string account_id;
  int64_t expires_at_unix_ms = 0;
};

// A token is "v1.<hex payload>.<hex HMAC-SHA256 of 'v1.<hex payload>'>" with
// payload "<account_id>\n<expiry, Unix ms>". Immutable: safe from any thread.
class Tokens {
 public:
  Tokens(std::string secret, std::chrono::seconds ttl) : secret_(std::move(secret)), ttl_(ttl) {}

  // A token for `account_id` valid for ttl from now_unix_ms.
  std::string issue(std::string_view account_id, int64_t now_unix_ms) const;
  // The claims of a token signed with this secret and not expired at
  // now_unix_ms; UNAUTHENTICATED otherwise (malformed, tampered, signed
  // with another secret, expired). The MAC is checked in constant time
  // before anything in the payload is believed.
  tern::Result<Claims> validate(std::string_view token, int64_t now_unix_ms) const;

  std::chrono::seconds ttl() const { return ttl_; }

 private:
  std::string mac(std::string_view signed_part) const;
  std::string secret_;
  std::chrono::seconds ttl_;
};

}  // namespace auth
