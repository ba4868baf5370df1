#include "tern/sqlite_idempotency.h"

#include <sqlite3.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "events/sqlite_wait.h"
#include "tern/log.h"

namespace tern {
namespace {

[[noreturn]] void fail(sqlite3* db, std::string_view what) {
  throw std::runtime_error(fmt::format("idempotency store: {}: {}", what, sqlite3_errmsg(db)));
}

void exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, sql);
}

struct Statement {
  Statement(sqlite3* d, const char* sql) : db(d) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) fail(db, sql);
  }
  ~Statement() { sqlite3_finalize(stmt); }
  Statement& text(int i, std::string_view v) {
    sqlite3_bind_text(stmt, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& int64(int i, int64_t v) {
    sqlite3_bind_int64(stmt, i, v);
    return *this;
  }
  bool step() {
    const int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(db, sqlite3_sql(stmt));
    return rc == SQLITE_ROW;
  }
  std::string blob(int i) const {
    const void* p = sqlite3_column_blob(stmt, i);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt, i)))
             : std::string();
  }
  sqlite3* db;
  sqlite3_stmt* stmt = nullptr;
};

// Field 22 of /proc/PID/stat: when the process started, in clock ticks
// since boot; with the pid it names one process for as long as the host
// runs. 0 if there is no such process.
int64_t start_time_of(int64_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t at = stat.rfind(')');
  if (at == std::string::npos) return 0;
  // Fields after the command: state is field 3, start time field 22.
  for (int field = 2; field < 22 && at != std::string::npos; ++field) at = stat.find(' ', at + 1);
  return at == std::string::npos ? 0 : std::atoll(stat.c_str() + at + 1);
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Runs fn in BEGIN IMMEDIATE ... COMMIT (ROLLBACK if it throws).
template <class F>
auto in_transaction(sqlite3* db, F&& fn) {
  exec(db, "BEGIN IMMEDIATE");
  try {
    auto r = fn();
    exec(db, "COMMIT");
    return r;
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

}  // namespace

SqliteIdempotencyStore::SqliteIdempotencyStore(const std::string& path, Options options)
    : options_(options), pid_(getpid()), start_(start_time_of(getpid())) {
  if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error(fmt::format("idempotency store: cannot open {}: {}", path, why));
  }
  busy_ = std::make_unique<detail::FiberBusyWait>(db_, std::chrono::seconds(5));
  exec(db_, "PRAGMA journal_mode=WAL");
  exec(db_,
       "CREATE TABLE IF NOT EXISTS tern_idempotency ("
       " key TEXT PRIMARY KEY, done INTEGER NOT NULL, reply BLOB,"
       " owner_pid INTEGER NOT NULL, owner_start INTEGER NOT NULL,"
       " updated_unix_ms INTEGER NOT NULL) WITHOUT ROWID");
}

SqliteIdempotencyStore::~SqliteIdempotencyStore() { sqlite3_close(db_); }

IdempotencyStore::Entry SqliteIdempotencyStore::begin(const std::string& key) {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  return in_transaction(db_, [&]() -> Entry {
    const int64_t now = now_unix_ms();
    Statement s(db_, "SELECT done, reply, owner_pid, owner_start, updated_unix_ms FROM tern_idempotency WHERE key = ?");
    s.text(1, key);
    if (s.step()) {
      const bool done = sqlite3_column_int(s.stmt, 0) != 0;
      const int64_t pid = sqlite3_column_int64(s.stmt, 2), start = sqlite3_column_int64(s.stmt, 3);
      if (done && sqlite3_column_int64(s.stmt, 4) >= now - options_.window.count())
        return Entry{State::kDone, s.blob(1)};
      if (!done && start_time_of(pid) == start && start != 0) return Entry{State::kInProgress, {}};
      if (!done)
        log::warn("idempotency key begun by process {} which is gone: running it again here", pid);
    }
    Statement(db_,
              "INSERT INTO tern_idempotency (key, done, reply, owner_pid, owner_start, updated_unix_ms)"
              " VALUES (?, 0, NULL, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET done = 0, reply = NULL,"
              " owner_pid = excluded.owner_pid, owner_start = excluded.owner_start,"
              " updated_unix_ms = excluded.updated_unix_ms")
        .text(1, key)
        .int64(2, pid_)
        .int64(3, start_)
        .int64(4, now)
        .step();
    return Entry{State::kNew, {}};
  });
}

void SqliteIdempotencyStore::finish(const std::string& key, std::string reply) {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  Statement s(db_,
              "UPDATE tern_idempotency SET done = 1, reply = ?, updated_unix_ms = ?"
              " WHERE key = ? AND done = 0 AND owner_pid = ? AND owner_start = ?");
  sqlite3_bind_blob(s.stmt, 1, reply.data(), static_cast<int>(reply.size()), SQLITE_TRANSIENT);
  s.int64(2, now_unix_ms()).text(3, key).int64(4, pid_).int64(5, start_).step();
}

void SqliteIdempotencyStore::abandon(const std::string& key) {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  Statement(db_, "DELETE FROM tern_idempotency WHERE key = ? AND done = 0 AND owner_pid = ? AND owner_start = ?")
      .text(1, key)
      .int64(2, pid_)
      .int64(3, start_)
      .step();
}

int SqliteIdempotencyStore::expire() {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  Statement(db_, "DELETE FROM tern_idempotency WHERE done = 1 AND updated_unix_ms < ?")
      .int64(1, now_unix_ms() - options_.window.count())
      .step();
  return sqlite3_changes(db_);
}

}  // namespace tern
