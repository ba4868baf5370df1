// service.auth's configuration, read once at start-up.
#pragma once

#include <chrono>
#include <string>

#include "accounts.h"

namespace auth {

// The signing secret used when TERN_AUTH_SECRET is unset: for development
// only (a warning says so at start-up).
inline constexpr const char* kDevSecret = "tern-dev-secret-change-me";
// The longest TERN_AUTH_TOKEN_TTL_S: ten years.
inline constexpr std::chrono::seconds kMaxTokenTtl{int64_t{10} * 365 * 24 * 3600};

struct Config {
  // TERN_AUTH_ACCOUNTS: the accounts file; default the accounts.conf beside
  // the service's sources. No such file: the built-in acc_demo / demo.
  std::string accounts_file;
  // TERN_AUTH_SECRET: the HMAC key of tokens. Every instance needs the same.
  std::string secret = kDevSecret;
  // TERN_AUTH_TOKEN_TTL_S: how long a token stays valid, 1 s to kMaxTokenTtl.
  std::chrono::seconds token_ttl{3600};

  // Throws tern::ConfigError naming the variable on a malformed value.
  static Config from_env(std::string default_accounts_file);
};

// The accounts of config.accounts_file, or Accounts::demo() (with a
// warning) if there is no such file. Throws if the file is malformed.
Accounts load_accounts(const Config& config);

}  // namespace auth
