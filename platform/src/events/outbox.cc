#include "tern/outbox.h"

#include <sqlite3.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "tern/call.h"
#include "tern/events.h"
#include "core/current.h"
#include "events/sqlite_wait.h"

namespace tern {
namespace {

// Finalizes a prepared statement however the scope ends.
struct Statement {
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK)
      throw std::runtime_error(fmt::format("outbox: {}", sqlite3_errmsg(db)));
  }
  ~Statement() { sqlite3_finalize(stmt); }
  sqlite3_stmt* stmt = nullptr;
};

}  // namespace

Outbox::Outbox(const std::string& path) {
  if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error(fmt::format("outbox: cannot open {}: {}", path, why));
  }
  busy_ = std::make_unique<detail::FiberBusyWait>(db_, std::chrono::seconds(5));
  exec("PRAGMA journal_mode=WAL");
  // One transaction: instances starting at once on a new file must not
  // both see the column missing and both add it.
  transaction([&] {
    create_table();
    return true;
  });
}

void Outbox::create_table() const {
  exec("CREATE TABLE IF NOT EXISTS tern_outbox ("
       " id INTEGER PRIMARY KEY AUTOINCREMENT,"
       " type TEXT NOT NULL, routing_key TEXT NOT NULL, body BLOB NOT NULL,"
       " trace_id TEXT, span_id TEXT, created_unix_ms INTEGER NOT NULL,"
       " sent INTEGER NOT NULL DEFAULT 0)");
  // Tables made before the event id was stored get its column.
  bool has_event_id = false;
  {
    Statement s(db_, "SELECT 1 FROM pragma_table_info('tern_outbox') WHERE name = 'event_id'");
    has_event_id = sqlite3_step(s.stmt) == SQLITE_ROW;
  }
  if (!has_event_id) exec("ALTER TABLE tern_outbox ADD COLUMN event_id TEXT");
  exec("CREATE INDEX IF NOT EXISTS tern_outbox_unsent ON tern_outbox (sent, id)");
}

Outbox::~Outbox() { sqlite3_close(db_); }

void Outbox::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown";
    sqlite3_free(err);
    throw std::runtime_error(fmt::format("outbox: {}: {}", sql, why));
  }
}

bool Outbox::transaction(const std::function<bool()>& fn) {
  const Outcome o = transaction_until({}, fn);
  if (o == Outcome::kBusy) throw std::runtime_error("outbox: the database stayed locked for 5 s");
  return o == Outcome::kCommitted;
}

Outbox::Outcome Outbox::transaction_until(std::chrono::steady_clock::time_point wait_until,
                                          const std::function<bool()>& fn) {
  // Only BEGIN IMMEDIATE waits: once it holds the write lock, nothing in
  // the transaction finds the database locked (WAL: readers never block).
  busy_->wait_until(wait_until);
  const int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  busy_->reset();
  if (rc == SQLITE_BUSY) return Outcome::kBusy;
  if (rc != SQLITE_OK) throw std::runtime_error(fmt::format("outbox: BEGIN IMMEDIATE: {}", sqlite3_errmsg(db_)));
  in_transaction_ = true;
  bool commit = false;
  try {
    commit = fn();
  } catch (...) {
    in_transaction_ = false;
    exec("ROLLBACK");
    throw;
  }
  in_transaction_ = false;
  if (commit && sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    // A failed COMMIT (disk full, I/O error) may leave the transaction
    // open: end it, so the next one can begin.
    const std::string why = sqlite3_errmsg(db_);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw std::runtime_error(fmt::format("outbox: COMMIT: {}", why));
  }
  if (!commit) exec("ROLLBACK");
  return commit ? Outcome::kCommitted : Outcome::kRolledBack;
}

void Outbox::add(const Context& ctx, const google::protobuf::Message& event) {
  if (!in_transaction_) throw std::logic_error("Outbox::add outside Outbox::transaction");
  Statement s(db_, "INSERT INTO tern_outbox (type, routing_key, body, trace_id, span_id, created_unix_ms, event_id)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)");
  const auto* type = event.GetDescriptor();
  const std::string body = event.SerializeAsString();
  const std::string key = event_routing_key(type);
  sqlite3_bind_text(s.stmt, 1, type->full_name().c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s.stmt, 2, key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(s.stmt, 3, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(s.stmt, 4, ctx.trace_id().c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s.stmt, 5, ctx.span_id().c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s.stmt, 6, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count());
  // The envelope's id, fixed now: every relay of this row sends the same.
  const std::string event_id = new_trace_id();
  sqlite3_bind_text(s.stmt, 7, event_id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s.stmt) != SQLITE_DONE)
    throw std::runtime_error(fmt::format("outbox: {}", sqlite3_errmsg(db_)));
}

int Outbox::relay(const Context& ctx) {
  Transport* transport = detail::transport_for(ctx);
  if (transport == nullptr) throw std::logic_error("Outbox::relay outside a tern runtime");
  struct Row {
    int64_t id;
    std::string type, key, body, trace_id, span_id, event_id;
  };
  std::vector<Row> rows;
  {
    Statement s(db_, "SELECT id, type, routing_key, body, trace_id, span_id, event_id FROM tern_outbox"
                     " WHERE sent = 0 ORDER BY id LIMIT 1000");
    while (sqlite3_step(s.stmt) == SQLITE_ROW) {
      Row r;
      r.id = sqlite3_column_int64(s.stmt, 0);
      r.type = reinterpret_cast<const char*>(sqlite3_column_text(s.stmt, 1));
      r.key = reinterpret_cast<const char*>(sqlite3_column_text(s.stmt, 2));
      r.body.assign(static_cast<const char*>(sqlite3_column_blob(s.stmt, 3)),
                    static_cast<size_t>(sqlite3_column_bytes(s.stmt, 3)));
      if (auto* t = sqlite3_column_text(s.stmt, 4)) r.trace_id = reinterpret_cast<const char*>(t);
      if (auto* t = sqlite3_column_text(s.stmt, 5)) r.span_id = reinterpret_cast<const char*>(t);
      if (auto* t = sqlite3_column_text(s.stmt, 6)) r.event_id = reinterpret_cast<const char*>(t);
      rows.push_back(std::move(r));
    }
  }
  int published = 0;
  for (Row& r : rows) {
    // At least once: a crash after the confirm and before this update
    // publishes the event again on the next relay.
    // Each event goes out in the trace of the request that caused it, with
    // none of the relaying context's metadata.
    Context event_ctx = Context::from_wire(ctx.deadline_unix_ms(), r.trace_id, r.span_id, "", "", "", {});
    event_ctx.set_transport(transport);
    // Rows from before ids were stored get a new one each relay.
    if (!transport->publish_with_id(event_ctx, r.event_id, r.type, r.key, std::move(r.body)).ok()) break;
    // Confirmed: the row has done its work (a sent row is never read again).
    Statement s(db_, "DELETE FROM tern_outbox WHERE id = ?");
    sqlite3_bind_int64(s.stmt, 1, r.id);
    if (sqlite3_step(s.stmt) != SQLITE_DONE)
      throw std::runtime_error(fmt::format("outbox: {}", sqlite3_errmsg(db_)));
    ++published;
  }
  return published;
}

int Outbox::pending() const {
  Statement s(db_, "SELECT COUNT(*) FROM tern_outbox WHERE sent = 0");
  return sqlite3_step(s.stmt) == SQLITE_ROW ? sqlite3_column_int(s.stmt, 0) : -1;
}

}  // namespace tern
