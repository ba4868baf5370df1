// service.auth's configuration, read once at start-up.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "accounts.h"
#include "limits.h"

namespace auth {

// The signing secret of development mode (TERN_AUTH_DEV=1) when no secret is
// given. Public, so never accepted outside development mode.
inline constexpr const char* kDevSecret = "tern-dev-secret-change-me-0123456789";
// Secrets shorter than this are refused: `openssl rand -hex 32` gives 64.
inline constexpr size_t kMinSecretBytes = 32;
// The longest TERN_AUTH_TOKEN_TTL_S: ten years.
inline constexpr std::chrono::seconds kMaxTokenTtl{int64_t{10} * 365 * 24 * 3600};

struct Config {
  // TERN_AUTH_DEV=1: development mode, asked for explicitly (scripts/up
  // does): the development secret when none is given, plain-text
  // passwords in the accounts file, the shipped accounts.conf (acc_demo /
  // demo) by default. Never in production.
  bool dev = false;
  // TERN_AUTH_ACCOUNTS: the accounts file. Required outside development
  // mode; in it, the shipped accounts.conf.
  std::string accounts_file;
  // TERN_AUTH_SECRET (one) or TERN_AUTH_SECRET_FILE (one per line, the
  // first signs, all validate: rotation): the HMAC keys of tokens, each at
  // least kMinSecretBytes. Required outside development mode. Every
  // instance needs the same. TERN_AUTH_CREATE_SECRET_FILE=1 first writes a
  // new random one to TERN_AUTH_SECRET_FILE if there is no such file (what
  // scripts/up and docker compose do, on their data volume).
  std::vector<std::string> secrets;
  // TERN_AUTH_TOKEN_TTL_S: how long a token stays valid, 1 s to kMaxTokenTtl.
  std::chrono::seconds token_ttl{3600};
  // TERN_AUTH_MAX_FAILURES (5) failed logins per account, and per client
  // address, in TERN_AUTH_FAILURE_WINDOW_S (900): then refused until the
  // window ends.
  LimitOptions limits;

  // Throws tern::ConfigError naming the variable on a missing or malformed
  // value, a short secret, or the development secret outside development.
  static Config from_env(std::string dev_accounts_file);

  // Every TERN_AUTH_* variable, read (so --help can list them all) and
  // nothing checked or done; throws only on a malformed number.
  struct Raw {
    std::string dev, accounts, secret, secret_file, create_secret_file;
    int64_t token_ttl_s = 0, max_failures = 0, failure_window_s = 0;
  };
  static Raw read_env();
};

// The accounts of config.accounts_file; in development mode without such a
// file, Accounts::demo() (with a warning). Throws if the file is malformed
// (or missing, outside development mode).
Accounts load_accounts(const Config& config);

}  // namespace auth
