// Stateless bearer tokens: any instance of service.auth that has the keys
// validates a token any other issued, with no shared store.
#pragma once

#include <tern/error.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace auth {

struct Claims {
  std::string account_id;
  int64_t expires_at_unix_ms = 0;
};

// A signing key and its id: the first 8 hex characters of
// SHA-256("tern.auth.kid:" + secret), so the id names the key without
// configuration and says nothing usable about it.
struct Key {
  explicit Key(std::string secret);
  std::string id;
  std::string secret;
};

// A token is "v2.<key id>.<hex payload>.<hex HMAC-SHA256 of everything before
// the last dot>" with payload "<account_id>\n<expiry, Unix ms>". The first
// key signs; every key validates, so a key is rotated by putting the new one
// first and dropping the old once its tokens have expired. Immutable: safe
// from any thread.
class Tokens {
 public:
  Tokens(std::vector<Key> keys, std::chrono::seconds ttl);   // throws std::invalid_argument if keys is empty
  Tokens(std::string secret, std::chrono::seconds ttl) : Tokens(std::vector<Key>{Key(std::move(secret))}, ttl) {}

  // A token for `account_id` valid for ttl from now_unix_ms.
  std::string issue(std::string_view account_id, int64_t now_unix_ms) const;
  // The claims of a token signed with one of the keys and not expired at
  // now_unix_ms; UNAUTHENTICATED otherwise (malformed, an unknown key id,
  // tampered, expired). The MAC is checked in constant time before anything
  // in the payload is believed.
  tern::Result<Claims> validate(std::string_view token, int64_t now_unix_ms) const;

  std::chrono::seconds ttl() const { return ttl_; }
  const std::string& signing_key_id() const { return keys_.front().id; }

 private:
  std::vector<Key> keys_;
  std::chrono::seconds ttl_;
};

}  // namespace auth
