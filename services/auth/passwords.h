// Passwords as service.auth keeps them: salted and stretched with
// PBKDF2-HMAC-SHA256, written "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace auth {

// New hashes: OWASP's 2023 figure for PBKDF2-HMAC-SHA256 (~130 ms here).
inline constexpr int kIterations = 600000;

struct PasswordHash {
  int iterations = 0;
  std::string salt;   // raw bytes
  std::string hash;   // raw bytes, 32

  // A new hash of `password`, with 16 random bytes of salt.
  static PasswordHash make(std::string_view password, int iterations = kIterations);
  // The hash written as to_string() writes it, or nullopt: an unknown
  // scheme, bad hex, a salt under 8 bytes, a hash not 32 bytes long,
  // iterations outside 1,000 to 100,000,000.
  static std::optional<PasswordHash> parse(std::string_view text);
  std::string to_string() const;
  // Whether `password` hashes to this (compared in constant time). Slow on
  // purpose: call it through common::offload from a handler.
  bool matches(std::string_view password) const;
};

}  // namespace auth
