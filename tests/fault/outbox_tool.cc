// Drives a tern::Outbox from a separate process, so a test can kill it
// between commit and publish.
//   outbox_tool DB commit-and-crash   commits a row and an event, then dies
//   outbox_tool DB relay              publishes what is pending; prints how many
#include <unistd.h>

#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "probe.pb.h"
#include "tern/outbox.h"
#include "tern/tern.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string mode = argv[2];
  tern::Outbox outbox(argv[1]);
  if (mode == "commit-and-crash") {
    sqlite3_exec(outbox.db(), "CREATE TABLE IF NOT EXISTS accounts (id TEXT)", nullptr, nullptr, nullptr);
    auto ctx = tern::Context::with_timeout(std::chrono::seconds(5));
    bool ok = outbox.transaction([&] {
      sqlite3_exec(outbox.db(), "INSERT INTO accounts VALUES ('ada')", nullptr, nullptr, nullptr);
      probe::Hop hop;
      const char* marker = std::getenv("OUTBOX_MARKER");
      hop.set_service(marker ? marker : "");
      outbox.add(ctx, hop);
      return true;
    });
    if (!ok) return 1;
    _exit(9);  // the crash: committed, never published
  }
  if (mode == "relay") {
    tern::Client client;
    int n = client.run([&] { return outbox.relay(tern::Context::with_timeout(std::chrono::seconds(10))); });
    std::printf("%d\n", n);
    return outbox.pending() == 0 ? 0 : 1;
  }
  return 2;
}
