// A service for tests/inbox: endpoint "apply" writes one effect row per run
// into an SQLite file its instances share, keyed by the request's
// idempotency key, and appends what it did to a ledger file.
//   INBOX_SERVICE  the service (queue) name
//   INBOX_DB       the shared database file
//   INBOX_LEDGER   lines "arrive KEY PID ATTEMPT" (the handler was
//                  entered) and "effect KEY PID ATTEMPT" (its row is
//                  written, not yet committed in inbox mode)
//   INBOX_MODE     inbox: the key commits with the row (tern::Inbox), and
//                  the per-process replay store is off, so every repeat
//                  is the inbox's;
//                  store: the row commits on its own and the key is kept
//                  by the replay step in a SqliteIdempotencyStore, in
//                  another transaction after it (the broken design)
//   INBOX_CRASH    a key prefix: SIGKILL this process right after writing
//                  such a key's row (inbox: before the commit; store:
//                  after it, before the key is finished)
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include <boost/fiber/mutex.hpp>
#include <fmt/format.h>

#include "probe.pb.h"
#include "tern/inbox.h"
#include "tern/sqlite_idempotency.h"
#include "tern/tern.h"

namespace {

std::string env(const char* name, const char* fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

void ledger(const std::string& path, const char* what, const tern::Context& ctx) {
  const std::string line = fmt::format("{} {} {} {}\n", what, ctx.idempotency_key(), getpid(), ctx.attempt());
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    (void)!write(fd, line.data(), line.size());
    close(fd);
  }
}

void insert_effect(sqlite3* db, const tern::Context& ctx) {
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO effects (key, pid, attempt) VALUES (?, ?, ?)", -1, &s, nullptr);
  sqlite3_bind_text(s, 1, ctx.idempotency_key().c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 2, getpid());
  sqlite3_bind_int64(s, 3, ctx.attempt());
  const int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
}

const char* kSchema = "CREATE TABLE IF NOT EXISTS effects (key TEXT NOT NULL, pid INTEGER, attempt INTEGER)";

}  // namespace

int main(int argc, char** argv) {
  const std::string db_path = env("INBOX_DB"), ledger_path = env("INBOX_LEDGER"), mode = env("INBOX_MODE", "inbox");
  const std::string crash = env("INBOX_CRASH");
  auto crashes = [&](const tern::Context& ctx) { return !crash.empty() && ctx.idempotency_key().starts_with(crash); };
  auto answer = [](const tern::Context& ctx) {
    probe::ProbeResponse r;
    r.set_instance(fmt::format("{} {}", getpid(), ctx.idempotency_key()));
    return r;
  };
  tern::Service svc{env("INBOX_SERVICE", "test.inbox")};
  std::unique_ptr<tern::Inbox> inbox;
  sqlite3* own = nullptr;
  boost::fibers::mutex own_mu;
  if (mode == "inbox") {
    inbox = std::make_unique<tern::Inbox>(db_path);
    inbox->read([](sqlite3* db) { sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr); });
    svc.set_idempotency_store(nullptr);
    svc.handle("apply", [&](tern::Context& ctx, const probe::ProbeRequest&) -> tern::Result<probe::ProbeResponse> {
      ledger(ledger_path, "arrive", ctx);
      return inbox->run<probe::ProbeResponse>(ctx, "apply", [&](tern::InboxTransaction& tx) {
        insert_effect(tx.db(), ctx);
        ledger(ledger_path, "effect", ctx);
        if (crashes(ctx)) raise(SIGKILL);   // written, not committed
        return answer(ctx);
      });
    });
  } else {
    svc.set_idempotency_store(std::make_shared<tern::SqliteIdempotencyStore>(db_path));
    sqlite3_open(db_path.c_str(), &own);
    sqlite3_busy_timeout(own, 5000);
    sqlite3_exec(own, kSchema, nullptr, nullptr, nullptr);
    svc.handle("apply", [&](tern::Context& ctx, const probe::ProbeRequest&) -> tern::Result<probe::ProbeResponse> {
      ledger(ledger_path, "arrive", ctx);
      {
        std::lock_guard<boost::fibers::mutex> lock(own_mu);
        insert_effect(own, ctx);   // committed on its own
      }
      ledger(ledger_path, "effect", ctx);
      if (crashes(ctx)) raise(SIGKILL);   // committed; the key is not finished
      return answer(ctx);
    });
  }
  return svc.run(argc, argv);
}
