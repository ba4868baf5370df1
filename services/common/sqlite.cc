#include "common/sqlite.h"

#include <sqlite3.h>

#include <filesystem>
#include <stdexcept>

namespace common {
namespace {

[[noreturn]] void fail(sqlite3* db, std::string_view what) {
  throw std::runtime_error(std::string("sqlite: ") + std::string(what) + ": " + sqlite3_errmsg(db));
}

}  // namespace

std::string data_file(const std::string& data_dir, std::string_view service_name) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec)
    throw std::runtime_error("cannot create data directory " + data_dir + ": " + ec.message());
  return (std::filesystem::path(data_dir) / (std::string(service_name) + ".db")).string();
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error(std::string("sqlite: ") + sql + ": " + why);
  }
}

Statement::Statement(sqlite3* db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) fail(db, sql);
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, std::string_view text) {
  if (sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK)
    fail(db_, "bind");
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) fail(db_, "bind");
  return *this;
}

bool Statement::step() {
  switch (sqlite3_step(stmt_)) {
    case SQLITE_ROW:
      return true;
    case SQLITE_DONE:
      return false;
    default:
      fail(db_, sqlite3_sql(stmt_));
  }
}

std::string Statement::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p),
                                    static_cast<size_t>(sqlite3_column_bytes(stmt_, column)))
                      : std::string();
}

int64_t Statement::int64(int column) const { return sqlite3_column_int64(stmt_, column); }

int changes(sqlite3* db) { return sqlite3_changes(db); }

Database::Database(const std::string& path) {
  if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
    std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error("sqlite: cannot open " + path + ": " + why);
  }
  sqlite3_busy_timeout(db_, 5000);
  exec(db_, "PRAGMA journal_mode=WAL");
}

Database::~Database() { sqlite3_close(db_); }

bool Database::transaction(const std::function<bool()>& fn) {
  exec(db_, "BEGIN IMMEDIATE");
  bool commit = false;
  try {
    commit = fn();
  } catch (...) {
    exec(db_, "ROLLBACK");
    throw;
  }
  exec(db_, commit ? "COMMIT" : "ROLLBACK");
  return commit;
}

}  // namespace common
