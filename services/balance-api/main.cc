// api.balance: the gateway's /balance route.
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::Service svc{"api.balance"};
  svc.get("/", "get", balance_api::get);
  return svc.run(argc, argv);
}
