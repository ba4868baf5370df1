// service.auth: issues the tokens callers present to the api services, and
// validates them for those services.
//   auth                   the service (configuration: config.h)
//   auth --hash-password   reads a password from stdin, prints the line
//                          for the accounts file's password field
#include <tern/tern.h>

#include <algorithm>
#include <cstring>
#include <iostream>

#include "config.h"
#include "handlers.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--hash-password") == 0) {
    std::string password;
    if (!std::getline(std::cin, password) || password.empty()) {
      std::cerr << "auth --hash-password: give the password on stdin\n";
      return 2;
    }
    std::cout << auth::PasswordHash::make(password).to_string() << "\n";
    return 0;
  }
  tern::log::set_process_name("service.auth");
  std::optional<auth::Auth> service;
  // --help lists the variables whatever their values; nothing is checked
  // or made (no secret file written) for it.
  const bool help = std::any_of(argv + 1, argv + argc, [](const char* a) {
    return std::strcmp(a, "--help") == 0 || std::strcmp(a, "-h") == 0;
  });
  if (help) {
    try {
      (void)auth::Config::read_env();
    } catch (const tern::ConfigError&) {
      // A malformed number: --help still prints.
    }
  } else try {
    auto config = auth::Config::from_env(TERN_AUTH_DEFAULT_ACCOUNTS);
    std::vector<auth::Key> keys(config.secrets.begin(), config.secrets.end());
    service.emplace(auth::load_accounts(config), auth::Tokens{std::move(keys), config.token_ttl}, config.limits);
    tern::log::info("signing tokens with key {} ({} keys accepted)", service->signing_key_id(),
                    config.secrets.size());
  } catch (const std::exception& e) {
    tern::log::error("bad configuration: {}", e.what());
    return 2;
  }
  tern::Service svc{"service.auth"};
  svc.handle("issue_token", [&](tern::Context& ctx, const auth::IssueTokenRequest& req) {
    return service->issue_token(ctx, req);
  });
  svc.handle("validate", [&](tern::Context& ctx, const auth::ValidateRequest& req) {
    return service->validate(ctx, req);
  });
  svc.rate_limit("issue_token", 50, 100);  // password guessing gets slow
  return svc.run(argc, argv);
}
