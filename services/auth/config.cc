#include "config.h"

#include <fmt/format.h>
#include <tern/env.h>
#include <tern/log.h>

#include <fcntl.h>
#include <cerrno>
#include <cstring>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/crypto.h"

namespace auth {
namespace {

// A new random secret in `path` (0600), unless the file exists: O_EXCL, so
// instances starting together on one volume agree on the first one's.
void create_secret_file(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return;
    throw tern::ConfigError("TERN_AUTH_CREATE_SECRET_FILE: cannot create " + path + ": " + std::strerror(errno));
  }
  const std::string line = common::random_hex(32) + "\n";
  const bool written = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && fsync(fd) == 0;
  close(fd);
  if (!written) throw tern::ConfigError("TERN_AUTH_CREATE_SECRET_FILE: cannot write " + path);
  tern::log::info("made a new signing secret in {}", path);
}

std::vector<std::string> secrets_from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw tern::ConfigError("TERN_AUTH_SECRET_FILE: cannot read " + path);
  std::vector<std::string> secrets;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line.front() == '#') continue;
    secrets.push_back(line);
  }
  if (secrets.empty()) throw tern::ConfigError("TERN_AUTH_SECRET_FILE: no secret in " + path);
  return secrets;
}

}  // namespace

Config::Raw Config::read_env() {
  Raw r;
  r.dev = tern::env::string("TERN_AUTH_DEV", "0");
  r.accounts = tern::env::string("TERN_AUTH_ACCOUNTS", "");
  r.secret = tern::env::string("TERN_AUTH_SECRET", "");
  r.secret_file = tern::env::string("TERN_AUTH_SECRET_FILE", "");
  r.create_secret_file = tern::env::string("TERN_AUTH_CREATE_SECRET_FILE", "0");
  const Config defaults;
  r.token_ttl_s = tern::env::integer("TERN_AUTH_TOKEN_TTL_S", defaults.token_ttl.count(), 1, kMaxTokenTtl.count());
  r.max_failures = tern::env::integer("TERN_AUTH_MAX_FAILURES", defaults.limits.max_failures, 1, 1000000);
  r.failure_window_s = tern::env::integer("TERN_AUTH_FAILURE_WINDOW_S", 900, 1, 86400);
  return r;
}

Config Config::from_env(std::string dev_accounts_file) {
  const Raw r = read_env();
  Config c;
  if (r.dev != "0" && r.dev != "1") throw tern::ConfigError("TERN_AUTH_DEV: '" + r.dev + "' is neither 0 nor 1");
  c.dev = r.dev == "1";
  c.accounts_file = r.accounts.empty() && c.dev ? dev_accounts_file : r.accounts;
  if (c.accounts_file.empty())
    throw tern::ConfigError("TERN_AUTH_ACCOUNTS is required (the accounts file), or TERN_AUTH_DEV=1 for development");
  const std::string& secret = r.secret;
  const std::string& file = r.secret_file;
  if (!secret.empty() && !file.empty())
    throw tern::ConfigError("TERN_AUTH_SECRET and TERN_AUTH_SECRET_FILE are both set: give one");
  if (!secret.empty()) c.secrets = {secret};
  const std::string& create = r.create_secret_file;
  if (create != "0" && create != "1")
    throw tern::ConfigError("TERN_AUTH_CREATE_SECRET_FILE: '" + create + "' is neither 0 nor 1");
  if (create == "1" && file.empty())
    throw tern::ConfigError("TERN_AUTH_CREATE_SECRET_FILE=1 needs TERN_AUTH_SECRET_FILE (where to put it)");
  if (create == "1") create_secret_file(file);
  if (!file.empty()) c.secrets = secrets_from_file(file);
  const char* source = file.empty() ? "TERN_AUTH_SECRET" : "TERN_AUTH_SECRET_FILE";
  for (const auto& s : c.secrets) {
    if (s.size() < kMinSecretBytes)
      throw tern::ConfigError(fmt::format("{}: a secret of {} bytes; at least {} (`openssl rand -hex 32`)", source,
                                          s.size(), kMinSecretBytes));
    if (s == kDevSecret && !c.dev)
      throw tern::ConfigError(std::string(source) + ": the public development secret, outside development mode");
  }
  if (c.secrets.empty()) {
    if (!c.dev)
      throw tern::ConfigError(
          "TERN_AUTH_SECRET or TERN_AUTH_SECRET_FILE is required (or TERN_AUTH_DEV=1 for development)");
    c.secrets = {kDevSecret};
    tern::log::warn("development mode (TERN_AUTH_DEV=1) without a secret: tokens are signed with the public "
                    "development secret, so anyone can forge them");
  } else if (c.dev) {
    tern::log::warn("development mode (TERN_AUTH_DEV=1): plain-text passwords allowed in {}", c.accounts_file);
  }
  c.token_ttl = std::chrono::seconds(r.token_ttl_s);
  c.limits.max_failures = static_cast<int>(r.max_failures);
  c.limits.window = std::chrono::seconds(r.failure_window_s);
  return c;
}

Accounts load_accounts(const Config& config) {
  if (auto accounts = Accounts::load(config.accounts_file, config.dev)) {
    tern::log::info("{} accounts from {}", accounts->size(), config.accounts_file);
    return std::move(*accounts);
  }
  if (!config.dev) throw tern::ConfigError("TERN_AUTH_ACCOUNTS: no file at " + config.accounts_file);
  tern::log::warn("no accounts file at {}: only the built-in acc_demo", config.accounts_file);
  return Accounts::demo();
}

}  // namespace auth
