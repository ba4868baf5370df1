// The accounts service.auth knows, and their passwords.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace auth {

// Immutable once built, so safe to read from any thread. Keeps SHA-256
// digests of the passwords, not the passwords.
class Accounts {
 public:
  // Parses "<account_id> <password>" lines; blank lines and '#' comments are
  // skipped. Throws std::invalid_argument naming the line if one is malformed
  // or repeats an account.
  static Accounts parse(std::string_view text);
  // The file at `path` parsed, or nullopt if there is no such file. Throws
  // as parse() does, or std::runtime_error if the file cannot be read.
  static std::optional<Accounts> load(const std::string& path);
  // The built-in development account: acc_demo / demo.
  static Accounts demo();

  // Whether `password` is the account's. Compares digests in constant time,
  // and spends the same work on an unknown account, so timing tells neither
  // how much of a password matched nor whether the account exists.
  bool check(std::string_view account_id, std::string_view password) const;
  size_t size() const { return digests_.size(); }

 private:
  std::map<std::string, std::string, std::less<>> digests_;  // account id -> SHA-256(password)
};

}  // namespace auth
