// The accounts service.auth knows, and their password hashes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "passwords.h"

namespace auth {

// Immutable once built, so safe to read from any thread. Keeps PBKDF2
// hashes of the passwords, never the passwords.
class Accounts {
 public:
  // Parses "<account_id> <hash>" lines, the hash as PasswordHash writes it
  // (`auth --hash-password` prints one); blank lines and '#' comments are
  // skipped. With allow_plain (development only), "<account_id> <password>"
  // too: it is hashed here. Throws std::invalid_argument naming the line if
  // one is malformed, holds a plain password when that is not allowed, or
  // repeats an account.
  static Accounts parse(std::string_view text, bool allow_plain = false);
  // The file at `path` parsed, or nullopt if there is no such file. Throws
  // as parse() does, or std::runtime_error if the file cannot be read.
  static std::optional<Accounts> load(const std::string& path, bool allow_plain = false);
  // The built-in development account: acc_demo / demo.
  static Accounts demo();

  // Whether `password` is the account's. Compares in constant time, and
  // spends the same work on an unknown account, so timing tells neither
  // how much of a password matched nor whether the account exists. Slow
  // (the KDF): call it through common::offload from a handler.
  bool check(std::string_view account_id, std::string_view password) const;
  size_t size() const { return hashes_.size(); }

 private:
  std::map<std::string, PasswordHash, std::less<>> hashes_;
};

}  // namespace auth
