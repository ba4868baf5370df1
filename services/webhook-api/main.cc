// api.webhook: the gateway's /webhooks/... routes.
#include <tern/tern.h>

#include "handlers.h"

int main(int argc, char** argv) {
  tern::Service svc{"api.webhook"};
  svc.post("/", "register", webhook_api::register_webhook)
      .get("/", "list", webhook_api::list)
      .del("/:id", "deregister", webhook_api::deregister);
  return svc.run(argc, argv);
}
