#include "config.h"

#include <tern/log.h>

#include <tern/env.h>

namespace auth {

Config Config::from_env(std::string default_accounts_file) {
  Config c;
  c.accounts_file = tern::env::string("TERN_AUTH_ACCOUNTS", std::move(default_accounts_file));
  c.secret = tern::env::string("TERN_AUTH_SECRET", c.secret);
  c.token_ttl = std::chrono::seconds(
      tern::env::integer("TERN_AUTH_TOKEN_TTL_S", c.token_ttl.count(), 1, kMaxTokenTtl.count()));
  if (c.secret == kDevSecret)
    tern::log::warn("TERN_AUTH_SECRET is not set: signing tokens with the development secret");
  return c;
}

Accounts load_accounts(const Config& config) {
  if (auto accounts = Accounts::load(config.accounts_file)) {
    tern::log::info("{} accounts from {}", accounts->size(), config.accounts_file);
    return std::move(*accounts);
  }
  tern::log::warn("no accounts file at {}: only the built-in acc_demo", config.accounts_file);
  return Accounts::demo();
}

}  // namespace auth
