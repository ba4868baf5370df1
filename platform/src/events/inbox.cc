#include "tern/inbox.h"

#include <sqlite3.h>

#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "core/wire.h"
#include "tern/envelope.pb.h"

namespace tern {
namespace {

// Finalizes a prepared statement however the scope ends; errors throw.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) fail();
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& text(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& blob(int i, std::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& int64(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail();
    return false;
  }
  std::string column(int i) const {
    const void* p = sqlite3_column_blob(stmt_, i);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string();
  }

 private:
  [[noreturn]] void fail() const { throw std::runtime_error(fmt::format("inbox: {}", sqlite3_errmsg(db_))); }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown";
    sqlite3_free(err);
    throw std::runtime_error(fmt::format("inbox: {}: {}", sql, why));
  }
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// FNV-1a, 64 bits, as hex: the same in every process and build, which
// std::hash does not promise. It only tells requests apart; nothing
// depends on it being hard to collide.
std::string fingerprint_of(std::string_view bytes) {
  if (bytes.empty()) return {};
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

Result<std::string> decode(const std::string& stored) {
  tern::v1::Response r;
  if (!r.ParseFromString(stored)) return Error{Code::kInternal, "the inbox holds an answer that does not parse"};
  if (r.has_error() && r.error().code() != tern::v1::OK) return detail::from_wire(r.error());
  return std::move(*r.mutable_body());
}

}  // namespace

Inbox::Inbox(const std::string& path, InboxOptions options) : options_(options), outbox_(path) {
  exec(outbox_.db(),
       "CREATE TABLE IF NOT EXISTS tern_inbox ("
       " scope TEXT NOT NULL, key TEXT NOT NULL,"
       " reply BLOB NOT NULL,"              // a serialized tern.v1.Response
       " fingerprint TEXT NOT NULL,"        // of the request; '' if none was given
       " created_unix_ms INTEGER NOT NULL,"
       " PRIMARY KEY (scope, key)) WITHOUT ROWID");
  exec(outbox_.db(), "CREATE INDEX IF NOT EXISTS tern_inbox_age ON tern_inbox (created_unix_ms)");
}

Inbox::~Inbox() = default;

Result<std::string> Inbox::run_bytes(const Context& ctx, std::string_view scope, std::string_view key,
                                     std::string_view fingerprint, bool record_errors,
                                     const std::function<Result<std::string>(InboxTransaction&)>& fn) {
  const std::string fp = fingerprint_of(fingerprint);
  std::optional<Result<std::string>> out;
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  const auto wait_until = std::min(ctx.deadline(), Context::Clock::now() + options_.busy_timeout);
  const Outbox::Outcome outcome = outbox_.transaction_until(wait_until, [&] {
    sqlite3* db = outbox_.db();
    if (!key.empty()) {
      Statement s(db, "SELECT reply, fingerprint FROM tern_inbox WHERE scope = ? AND key = ?");
      s.text(1, scope).text(2, key);
      if (s.step()) {
        const std::string stored_fp = s.column(1);
        if (!fp.empty() && !stored_fp.empty() && fp != stored_fp) {
          out = Error{Code::kInvalidArgument,
                      fmt::format("idempotency key '{}' was used before with another request", key)}
                    .with_param("idempotency_key", "reused");
        } else {
          out = decode(s.column(0));
          replayed_.fetch_add(1, std::memory_order_relaxed);
        }
        return false;   // nothing written
      }
    }
    // fn's writes can be undone apart from the key's.
    exec(db, "SAVEPOINT tern_inbox_fn");
    InboxTransaction tx(outbox_, std::string(key));
    Result<std::string> r = fn(tx);
    if (!r.ok()) exec(db, "ROLLBACK TO tern_inbox_fn");
    exec(db, "RELEASE tern_inbox_fn");
    const bool keep_error = !r.ok() && record_errors && !r.error().retryable;
    if (key.empty() || (!r.ok() && !keep_error)) {
      out = std::move(r);
      return out->ok();
    }
    tern::v1::Response stored;
    if (r.ok()) stored.set_body(*r);
    else detail::to_wire(r.error(), stored.mutable_error());
    Statement(db, "INSERT INTO tern_inbox (scope, key, reply, fingerprint, created_unix_ms) VALUES (?, ?, ?, ?, ?)")
        .text(1, scope)
        .text(2, key)
        .blob(3, stored.SerializeAsString())
        .text(4, fp)
        .int64(5, now_unix_ms())
        .step();
    out = std::move(r);
    return true;   // fn's rows, its events, the key and its answer: one commit
  });
  if (outcome == Outbox::Outcome::kBusy)
    return Error{Code::kUnavailable,
                 fmt::format("the database stayed locked by another connection; {} did not run", scope)}
        .with_param("outcome", "not run");
  return std::move(*out);
}

int Inbox::relay(const Context& ctx) {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  return outbox_.relay(ctx);
}

int Inbox::pending() {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  return outbox_.pending();
}

int Inbox::expire() {
  std::lock_guard<boost::fibers::mutex> lock(mu_);
  Statement(outbox_.db(), "DELETE FROM tern_inbox WHERE created_unix_ms < ?")
      .int64(1, now_unix_ms() - options_.keep.count())
      .step();
  return sqlite3_changes(outbox_.db());
}

}  // namespace tern
