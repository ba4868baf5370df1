// service.auth: issues the tokens callers present to the api services, and
// validates them for those services.
#include <tern/tern.h>

#include "config.h"
#include "handlers.h"

int main(int argc, char** argv) {
  tern::log::set_process_name("service.auth");
  std::optional<auth::Auth> service;
  try {
    auto config = auth::Config::from_env(TERN_AUTH_DEFAULT_ACCOUNTS);
    service.emplace(auth::load_accounts(config), auth::Tokens{config.secret, config.token_ttl});
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
