// tern::Inbox and tern::SqliteIdempotencyStore on real SQLite files, no
// broker. The evidence is the database itself, read through a connection
// of the test's own: rows per key, what the outbox holds.
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include <boost/fiber/all.hpp>
#include <catch2/catch.hpp>

#include "tern/inbox.h"
#include "tern/sqlite_idempotency.h"
#include "tern/testing.h"
#include "probe.pb.h"

using namespace std::chrono_literals;
using State = tern::IdempotencyStore::State;

namespace {

// A fresh database file, removed (with its WAL) at the end.
struct TempDb {
  std::string path;
  TempDb() {
    char tmpl[] = "/tmp/tern-inbox-test.XXXXXX";
    path = std::string(mkdtemp(tmpl)) + "/inbox.db";
  }
  ~TempDb() { std::filesystem::remove_all(std::filesystem::path(path).parent_path()); }
};

// The test's own connection: the independent reader.
struct Reader {
  sqlite3* db = nullptr;
  explicit Reader(const std::string& path) { sqlite3_open(path.c_str(), &db); }
  ~Reader() { sqlite3_close(db); }
  int64_t count(const std::string& sql) const {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
  }
};

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "?";
    sqlite3_free(err);
    FAIL(sql << ": " << why);
  }
}

void make_effects(tern::Inbox& inbox) {
  inbox.read([](sqlite3* db) { exec(db, "CREATE TABLE IF NOT EXISTS effects (key TEXT, note TEXT)"); });
}

tern::Context keyed(std::string key, std::chrono::milliseconds timeout = 5s) {
  auto ctx = tern::Context::with_timeout(timeout);
  ctx.set_idempotency_key(std::move(key));
  return ctx;
}

// One effect row and a reply naming `note`.
tern::Result<probe::ProbeResponse> write_effect(tern::InboxTransaction& tx, const std::string& note) {
  exec(tx.db(), "INSERT INTO effects VALUES ('" + tx.key() + "', '" + note + "')");
  probe::ProbeResponse r;
  r.set_instance(note);
  return r;
}

}  // namespace

TEST_CASE("inbox: a keyed run commits its rows with the key and a repeat replays the answer without running") {
  TempDb file;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  int runs = 0;
  auto run = [&](const std::string& note) {
    auto ctx = keyed("k1");
    return inbox.run<probe::ProbeResponse>(ctx, "apply", [&](tern::InboxTransaction& tx) {
      ++runs;
      return write_effect(tx, note);
    });
  };
  auto first = run("first");
  auto second = run("second");
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(runs == 1);
  CHECK(second->instance() == "first");
  CHECK(inbox.replayed() == 1);
  Reader reader(file.path);
  CHECK(reader.count("SELECT COUNT(*) FROM effects WHERE key = 'k1'") == 1);
  CHECK(reader.count("SELECT COUNT(*) FROM tern_inbox WHERE scope = 'apply' AND key = 'k1'") == 1);
  // Another scope is another key.
  auto ctx = keyed("k1");
  auto other = inbox.run<probe::ProbeResponse>(ctx, "other", [&](tern::InboxTransaction& tx) { return write_effect(tx, "o"); });
  CHECK(other->instance() == "o");
}

TEST_CASE("inbox: a second Inbox on the same file, as another instance, replays the first one's key") {
  TempDb file;
  tern::Inbox a(file.path), b(file.path);
  make_effects(a);
  auto ctx = keyed("k");
  REQUIRE(a.run<probe::ProbeResponse>(ctx, "apply", [](tern::InboxTransaction& tx) { return write_effect(tx, "a"); }).ok());
  bool ran = false;
  auto again = b.run<probe::ProbeResponse>(ctx, "apply", [&](tern::InboxTransaction& tx) {
    ran = true;
    return write_effect(tx, "b");
  });
  REQUIRE(again.ok());
  CHECK_FALSE(ran);
  CHECK(again->instance() == "a");
  CHECK(Reader(file.path).count("SELECT COUNT(*) FROM effects") == 1);
}

TEST_CASE("inbox: errors keep no rows: a non-retryable one is kept with the key but not a retryable one or a throw") {
  TempDb file;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  Reader reader(file.path);
  int runs = 0;
  auto failing = [&](tern::Error e) {
    return [&runs, e](tern::InboxTransaction& tx) -> tern::Result<probe::ProbeResponse> {
      ++runs;
      exec(tx.db(), "INSERT INTO effects VALUES ('" + tx.key() + "', 'failed')");
      return e;
    };
  };
  auto ctx = keyed("bad");
  auto r1 = inbox.run<probe::ProbeResponse>(ctx, "apply", failing({tern::Code::kFailedPrecondition, "no"}));
  auto r2 = inbox.run<probe::ProbeResponse>(ctx, "apply", failing({tern::Code::kFailedPrecondition, "no"}));
  CHECK(r1.code() == tern::Code::kFailedPrecondition);
  CHECK(r2.code() == tern::Code::kFailedPrecondition);
  CHECK(r2.error().message == "no");
  CHECK(runs == 1);

  ctx = keyed("later");
  runs = 0;
  CHECK(inbox.run<probe::ProbeResponse>(ctx, "apply", failing({tern::Code::kUnavailable, "later"})).code() ==
        tern::Code::kUnavailable);
  CHECK_THROWS(inbox.run<probe::ProbeResponse>(ctx, "apply", [&](tern::InboxTransaction& tx) -> tern::Result<probe::ProbeResponse> {
    ++runs;
    exec(tx.db(), "INSERT INTO effects VALUES ('later', 'threw')");
    throw std::runtime_error("boom");
  }));
  auto ok = inbox.run<probe::ProbeResponse>(ctx, "apply", [&](tern::InboxTransaction& tx) {
    ++runs;
    return write_effect(tx, "third time");
  });
  CHECK(ok.ok());
  CHECK(runs == 3);
  CHECK(reader.count("SELECT COUNT(*) FROM effects WHERE note IN ('failed', 'threw')") == 0);
  CHECK(reader.count("SELECT COUNT(*) FROM effects WHERE key = 'later'") == 1);
}

TEST_CASE("inbox: events published in a run are in the outbox only if it commits, and relay once") {
  TempDb file;
  tern::testing::FakeTransport fake;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  auto ctx = fake.context(5s);
  ctx.set_idempotency_key("e1");
  probe::Hop hop;
  hop.set_service("x");
  auto publish_then = [&](tern::Result<probe::ProbeResponse> r) {
    return [&, r](tern::InboxTransaction& tx) {
      tx.publish(ctx, hop);
      return r;
    };
  };
  inbox.run<probe::ProbeResponse>(ctx, "apply", publish_then(tern::Error{tern::Code::kInvalidArgument, "no"}));
  CHECK(inbox.pending() == 0);
  ctx.set_idempotency_key("e2");
  inbox.run<probe::ProbeResponse>(ctx, "apply", publish_then(probe::ProbeResponse{}));
  inbox.run<probe::ProbeResponse>(ctx, "apply", publish_then(probe::ProbeResponse{}));   // a repeat
  CHECK(inbox.pending() == 1);
  CHECK(inbox.relay(ctx) == 1);
  CHECK(fake.published<probe::Hop>().size() == 1);
}

TEST_CASE("inbox: a key reused with another request is refused without running") {
  TempDb file;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  probe::ProbeRequest one, two;
  one.set_sleep_ms(1);
  two.set_sleep_ms(2);
  int runs = 0;
  auto handler = inbox.handler("apply", [&](tern::Context&, const probe::ProbeRequest&, tern::InboxTransaction& tx) {
    ++runs;
    return write_effect(tx, "h");
  });
  auto ctx = keyed("k");
  CHECK(handler(ctx, one).ok());
  CHECK(handler(ctx, one).ok());
  auto reused = handler(ctx, two);
  CHECK(reused.code() == tern::Code::kInvalidArgument);
  CHECK(reused.error().params.at("idempotency_key") == "reused");
  CHECK(runs == 1);
}

TEST_CASE("inbox: without a key each run is one transaction of its own and nothing is kept") {
  TempDb file;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  auto ctx = tern::Context::with_timeout(5s);
  for (int i = 0; i < 2; ++i)
    inbox.run<probe::ProbeResponse>(ctx, "apply", [](tern::InboxTransaction& tx) { return write_effect(tx, "n"); });
  Reader reader(file.path);
  CHECK(reader.count("SELECT COUNT(*) FROM effects") == 2);
  CHECK(reader.count("SELECT COUNT(*) FROM tern_inbox") == 0);
}

TEST_CASE("inbox: on_event runs once per event id and keeps nothing when the handler fails") {
  TempDb file;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  int runs = 0;
  bool fail = true;
  auto on = inbox.on_event<probe::Hop>("sub", [&](tern::Context&, const probe::Hop&, tern::InboxTransaction& tx) {
    ++runs;
    exec(tx.db(), "INSERT INTO effects VALUES ('ev', 'x')");
    return fail ? tern::Error{tern::Code::kFailedPrecondition, "not yet"} : tern::ok();
  });
  auto ctx = tern::Context::from_wire(tern::to_unix_ms(tern::Context::Clock::now() + 5s), "t", "s", "", "ev_1", "", {});
  CHECK(on(ctx, probe::Hop{}).code == tern::Code::kFailedPrecondition);
  fail = false;
  CHECK(on(ctx, probe::Hop{}).ok());
  CHECK(on(ctx, probe::Hop{}).ok());
  CHECK(runs == 2);
  CHECK(Reader(file.path).count("SELECT COUNT(*) FROM effects") == 1);
}

TEST_CASE("inbox: the same keys from two threads with a connection each run once") {
  TempDb file;
  { tern::Inbox setup(file.path); make_effects(setup); }
  constexpr int kKeys = 200;
  std::map<std::string, std::string> answers[2];
  std::atomic<int> runs{0};
  auto worker = [&](int who) {
    tern::Inbox inbox(file.path);
    for (int i = 0; i < kKeys; ++i) {
      auto ctx = keyed("k" + std::to_string(i));
      auto r = inbox.run<probe::ProbeResponse>(ctx, "apply", [&](tern::InboxTransaction& tx) {
        ++runs;
        return write_effect(tx, std::to_string(who));
      });
      if (r.ok()) answers[who][ctx.idempotency_key()] = r->instance();
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  CHECK(runs.load() == kKeys);
  CHECK(answers[0] == answers[1]);
  CHECK(answers[0].size() == kKeys);
  Reader reader(file.path);
  CHECK(reader.count("SELECT COUNT(*) FROM effects") == kKeys);
  CHECK(reader.count("SELECT COUNT(*) FROM (SELECT key FROM effects GROUP BY key HAVING COUNT(*) > 1)") == 0);
}

TEST_CASE("inbox: waiting for another connection's write lock parks only the fiber, then answers UNAVAILABLE") {
  TempDb file;
  tern::Inbox inbox(file.path);
  make_effects(inbox);
  Reader other(file.path);
  exec(other.db, "BEGIN IMMEDIATE");   // another instance in a long transaction
  std::atomic<int> ticks{0};
  bool done = false;
  tern::Result<probe::ProbeResponse> r = tern::Error{tern::Code::kUnknown, "not run"};
  const auto start = std::chrono::steady_clock::now();
  boost::fibers::fiber waiter([&] {
    auto ctx = keyed("k", 400ms);
    r = inbox.run<probe::ProbeResponse>(ctx, "apply", [](tern::InboxTransaction& tx) { return write_effect(tx, "x"); });
    done = true;
  });
  boost::fibers::fiber ticker([&] {
    while (!done) {
      ++ticks;
      boost::this_fiber::sleep_for(5ms);
    }
  });
  waiter.join();
  ticker.join();
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(r.code() == tern::Code::kUnavailable);
  CHECK(r.error().retryable);
  CHECK(waited >= 350ms);
  CHECK(ticks.load() >= 20);   // the other fiber ran while the first waited
  exec(other.db, "ROLLBACK");

  // A lock released while it waits: the run goes ahead.
  exec(other.db, "BEGIN IMMEDIATE");
  boost::fibers::fiber releaser([&] {
    boost::this_fiber::sleep_for(100ms);
    exec(other.db, "COMMIT");
  });
  auto ctx = keyed("k2", 5s);
  auto later = inbox.run<probe::ProbeResponse>(ctx, "apply", [](tern::InboxTransaction& tx) { return write_effect(tx, "y"); });
  releaser.join();
  CHECK(later.ok());
}

TEST_CASE("sqlite idempotency store: instances sharing the file see a key in progress, then its answer") {
  TempDb file;
  tern::SqliteIdempotencyStore a(file.path), b(file.path);
  CHECK(a.begin("k").state == State::kNew);
  CHECK(b.begin("k").state == State::kInProgress);
  a.finish("k", "answer");
  auto e = b.begin("k");
  CHECK(e.state == State::kDone);
  CHECK(e.reply == "answer");
  CHECK(b.begin("other").state == State::kNew);
  b.abandon("other");
  CHECK(a.begin("other").state == State::kNew);
}

TEST_CASE("sqlite idempotency store: a key begun by a process that is gone is taken over") {
  TempDb file;
  { tern::SqliteIdempotencyStore create(file.path); }
  pid_t child = fork();
  if (child == 0) _exit(0);
  REQUIRE(waitpid(child, nullptr, 0) == child);
  Reader writer(file.path);
  exec(writer.db, "INSERT INTO tern_idempotency VALUES ('k', 0, NULL, " + std::to_string(child) + ", 1, 0)");
  tern::SqliteIdempotencyStore store(file.path);
  CHECK(store.begin("k").state == State::kNew);
  CHECK(store.begin("k").state == State::kInProgress);   // now ours, and we are alive
}
