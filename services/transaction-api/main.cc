// api.transaction: the gateway's /transactions/... routes.
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::Service svc{"api.transaction"};
  // No answers kept here: a retry runs create again, which passes the key on
  // to service.transaction, whose inbox answers it. Kept here, an error such
  // as DEADLINE_EXCEEDED would be replayed to every retry of the key even
  // after service.transaction had committed the transaction.
  svc.set_idempotency_store(nullptr);
  svc.post("/", "create", transaction_api::create).get("/:id", "get", transaction_api::get);
  return svc.run(argc, argv);
}
