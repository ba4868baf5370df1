// SQLite for the example services: a connection, prepared statements, and
// where the database file lives.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace common {

// "<data_dir>/<service_name>.db", creating data_dir (and its parents) if
// missing. Throws std::runtime_error if it cannot.
std::string data_file(const std::string& data_dir, std::string_view service_name);

// Runs one or more statements with no parameters. Throws std::runtime_error.
void exec(sqlite3* db, const char* sql);

// A prepared statement on `db`, finalized however the scope ends. Not
// thread-safe, like the connection it uses. Errors throw std::runtime_error.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds parameter `index` (from 1). Text is copied.
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, int64_t value);
  // Advances: true with a row to read, false once done.
  bool step();
  // Columns of the current row, from 0. NULL reads as "" and 0.
  std::string text(int column) const;
  int64_t int64(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Rows changed by the last INSERT, UPDATE or DELETE on `db`.
int changes(sqlite3* db);

// An SQLite connection of the service's own (services with an outbox use
// tern::Outbox::db() instead): WAL journal, 5 s busy timeout. Not
// thread-safe: callers serialize its use.
class Database {
 public:
  // Opens or creates the file. Throws std::runtime_error if it cannot.
  explicit Database(const std::string& path);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* get() const { return db_; }

  // Runs fn in BEGIN IMMEDIATE ... COMMIT; if fn returns false or throws,
  // rolls back (and rethrows). Returns whether it committed.
  bool transaction(const std::function<bool()>& fn);

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace common
