// Thin wrappers over libcrypto (OpenSSL) for the example services: HMAC,
// SHA-256, PBKDF2, random secrets and ids, constant-time comparison.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace common {

// HMAC-SHA256 of `data` keyed by `key`: 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

// SHA-256 of `data`: 32 raw bytes.
std::string sha256(std::string_view data);

// PBKDF2-HMAC-SHA256 of `password` with `salt`, `iterations` rounds: 32 raw
// bytes. Slow on purpose: call it through common::offload from a handler.
std::string pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations);

// Lowercase hex of raw bytes, and back (nullopt on odd length or a non-hex char).
std::string to_hex(std::string_view bytes);
std::optional<std::string> from_hex(std::string_view hex);

// `bytes` bytes from OpenSSL's CSPRNG as 2*bytes lowercase hex characters:
// for secrets and unguessable ids. Throws std::runtime_error if the
// generator fails (it does not silently fall back to a weaker one).
std::string random_hex(size_t bytes);

// Whether a == b, in time that depends only on their lengths (never on
// where they first differ). For MACs and password digests.
bool equal_constant_time(std::string_view a, std::string_view b);

}  // namespace common
