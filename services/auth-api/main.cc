// api.auth: the gateway's /auth/... routes.
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::Service svc{"api.auth"};
  svc.post("/token", "token", auth_api::token);
  return svc.run(argc, argv);
}
