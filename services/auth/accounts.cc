#include "accounts.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace auth {

Accounts Accounts::parse(std::string_view text, bool allow_plain) {
  Accounts accounts;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string account, secret, extra;
    if (!(fields >> account)) continue;  // blank or a comment
    const std::string where = "accounts line " + std::to_string(number);
    if (!(fields >> secret) || (fields >> extra))
      throw std::invalid_argument(where + ": expected \"<account_id> <password hash>\"");
    std::optional<PasswordHash> h = PasswordHash::parse(secret);
    if (!h && secret.starts_with("pbkdf2-")) throw std::invalid_argument(where + ": a malformed password hash");
    if (!h && !allow_plain)
      throw std::invalid_argument(where + ": a plain-text password (allowed only with TERN_AUTH_DEV=1); store its "
                                          "hash instead, from `auth --hash-password`");
    if (!h) h = PasswordHash::make(secret);
    if (!accounts.hashes_.emplace(account, std::move(*h)).second)
      throw std::invalid_argument(where + ": account " + account + " appears twice");
  }
  return accounts;
}

std::optional<Accounts> Accounts::load(const std::string& path, bool allow_plain) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  return parse(text.str(), allow_plain);
}

Accounts Accounts::demo() { return parse("acc_demo demo\n", /*allow_plain=*/true); }

bool Accounts::check(std::string_view account_id, std::string_view password) const {
  static const PasswordHash kNobody = PasswordHash::make("no such account");
  auto it = hashes_.find(account_id);
  const bool known = it != hashes_.end();
  const bool match = (known ? it->second : kNobody).matches(password);
  return known && match;
}

}  // namespace auth
