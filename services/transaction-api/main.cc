// api.transaction: the gateway's /transactions/... routes.
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::Service svc{"api.transaction"};
  svc.post("/", "create", transaction_api::create).get("/:id", "get", transaction_api::get);
  return svc.run(argc, argv);
}
