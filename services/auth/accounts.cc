#include "accounts.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/crypto.h"

namespace auth {

Accounts Accounts::parse(std::string_view text) {
  Accounts accounts;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string account, password, extra;
    if (!(fields >> account)) continue;  // blank or a comment
    if (!(fields >> password) || (fields >> extra))
      throw std::invalid_argument("accounts line " + std::to_string(number) +
                                  ": expected \"<account_id> <password>\"");
    if (!accounts.digests_.emplace(account, common::sha256(password)).second)
      throw std::invalid_argument("accounts line " + std::to_string(number) + ": account " +
                                  account + " appears twice");
  }
  return accounts;
}

std::optional<Accounts> Accounts::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  return parse(text.str());
}

Accounts Accounts::demo() { return parse("acc_demo demo\n"); }

bool Accounts::check(std::string_view account_id, std::string_view password) const {
  static const std::string kNobody = common::sha256("no such account");
  const std::string given = common::sha256(password);
  auto it = digests_.find(account_id);
  const bool known = it != digests_.end();
  const bool match = common::equal_constant_time(given, known ? it->second : kNobody);
  return known && match;
}

}  // namespace auth
