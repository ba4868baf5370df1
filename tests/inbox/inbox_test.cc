// Exactly-once effects across instances: two processes of inbox_service
// share one SQLite file on the real broker (TERN_AMQP_URL); the same key
// reaches both (concurrent copies, a redelivery after kill -9, a client's
// retry on a fresh process). The evidence: the effect rows the handler
// writes (counted by key with the test's own connection), the ledger file
// (who was handed what), and what the client was answered.
#include <sqlite3.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <boost/fiber/all.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "../fault/service_process.h"
#include "probe.pb.h"
#include "tern/tern.h"

using namespace std::chrono_literals;

namespace {

struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/tern-inbox-it.XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

struct Line {
  std::string what, key;
  long pid;
  int attempt;
};

std::vector<Line> read_ledger(const std::string& path) {
  std::vector<Line> out;
  std::ifstream f(path);
  Line l;
  while (f >> l.what >> l.key >> l.pid >> l.attempt) out.push_back(l);
  return out;
}

// Effect rows per key, read with a connection of the test's own.
std::map<std::string, std::vector<long>> effects(const std::string& db_path) {
  std::map<std::string, std::vector<long>> out;
  sqlite3* db = nullptr;
  sqlite3_open(db_path.c_str(), &db);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT key, pid FROM effects", -1, &s, nullptr) == SQLITE_OK)
    while (sqlite3_step(s) == SQLITE_ROW)
      out[reinterpret_cast<const char*>(sqlite3_column_text(s, 0))].push_back(sqlite3_column_int64(s, 1));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

class System {
 public:
  System(std::string mode) : mode_(std::move(mode)), name_("test.inbox." + tern::new_span_id()) {}
  std::unique_ptr<ServiceProcess> start(const std::string& tag, std::string crash = "") {
    return std::make_unique<ServiceProcess>(
        INBOX_SERVICE_BIN, dir_.path + "/" + tag + ".log",
        std::vector<std::string>{"INBOX_SERVICE=" + name_, "INBOX_DB=" + db(), "INBOX_LEDGER=" + ledger(),
                                 "INBOX_MODE=" + mode_, "INBOX_CRASH=" + crash, "TERN_THREADS=2"});
  }
  std::string db() const { return dir_.path + "/shared.db"; }
  std::string ledger() const { return dir_.path + "/ledger"; }
  const std::string& name() const { return name_; }

  // Calls apply once per key in `keys`, all at once; the answers (or the
  // error) by key, in order of the keys.
  std::vector<tern::Result<probe::ProbeResponse>> call_all(tern::Client& client, const std::vector<std::string>& keys) {
    std::vector<tern::Result<probe::ProbeResponse>> out(keys.size(), tern::Error{tern::Code::kUnknown, "not run"});
    client.run([&] {
      std::vector<boost::fibers::fiber> fibers;
      for (size_t i = 0; i < keys.size(); ++i)
        fibers.emplace_back([&, i] {
          auto ctx = tern::Context::with_timeout(30s);
          tern::CallOptions opts;
          opts.timeout = 30s;
          opts.idempotency_key = keys[i];
          out[i] = tern::call<probe::ProbeResponse>(ctx, name_, "apply", probe::ProbeRequest{}, opts);
        });
      for (auto& f : fibers) f.join();
    });
    return out;
  }

 private:
  Dir dir_;
  const std::string mode_;
  const std::string name_;
};

// Rows beyond the first for one key.
int duplicates(const std::map<std::string, std::vector<long>>& rows) {
  int n = 0;
  for (const auto& [key, pids] : rows) n += static_cast<int>(pids.size()) - 1;
  return n;
}

std::string error_summary(const std::vector<tern::Result<probe::ProbeResponse>>& results) {
  std::map<std::string, int> by;
  for (const auto& r : results)
    if (!r.ok()) ++by[std::string(tern::code_name(r.code()))];
  std::string s;
  for (const auto& [code, n] : by) s += fmt::format("{}{}={}", s.empty() ? "" : " ", code, n);
  return s.empty() ? "none" : s;
}

bool await_exit(ServiceProcess& p, std::chrono::seconds within) {
  const auto until = std::chrono::steady_clock::now() + within;
  int status = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (p.exited(&status)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

struct KillFigures {
  int sent = 0, ok = 0, rows = 0, dup = 0, crash_rows = 0, crash_rows_by_survivor = 0, retried_ok = 0,
      retried_same = 0, retried_arrivals = 0, new_effects_on_retry = 0;
  int signal = 0;
  bool victim_wrote_it = false, redelivered = false;
  std::string errors;
};

// The victim takes every request at first (it is alone), writes the crash
// key's row and dies by SIGKILL; a survivor then gets the redeliveries.
// Afterwards a fresh victim (no memory of anything) joins, and the client
// repeats every key once.
KillFigures kill_between_write_and_commit(const std::string& mode) {
  System sys(mode);
  KillFigures f;
  tern::Client client;
  auto victim = sys.start("victim", "crash-");
  const pid_t victim_pid = victim->started_pid();
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) keys.push_back(fmt::format("k{}", i));
  keys.insert(keys.begin() + 15, "crash-1");
  f.sent = static_cast<int>(keys.size());
  std::vector<tern::Result<probe::ProbeResponse>> first;
  std::thread calls([&] { first = sys.call_all(client, keys); });
  const bool died = await_exit(*victim, 20s);
  f.signal = died ? victim->killed_by() : 0;
  auto survivor = sys.start("survivor");
  calls.join();
  for (const auto& r : first) f.ok += r.ok();
  f.errors = error_summary(first);

  // A client's retry of every key on two processes that never ran them.
  const size_t before = read_ledger(sys.ledger()).size();
  auto fresh = sys.start("fresh");
  auto again = sys.call_all(client, keys);
  for (size_t i = 0; i < keys.size(); ++i) {
    f.retried_ok += again[i].ok();
    f.retried_same += again[i].ok() && first[i].ok() && again[i]->instance() == first[i]->instance();
  }
  const auto lines = read_ledger(sys.ledger());
  for (size_t i = before; i < lines.size(); ++i) {
    f.retried_arrivals += lines[i].what == "arrive";
    f.new_effects_on_retry += lines[i].what == "effect";
  }
  for (const auto& l : lines) {
    if (l.key != "crash-1") continue;
    f.victim_wrote_it |= l.what == "effect" && l.pid == victim_pid;
    // The same attempt begun by the survivor: the broker's redelivery,
    // not a retry by the client (which would carry attempt 2).
    f.redelivered |= l.what == "arrive" && l.pid == survivor->started_pid() && l.attempt == 1;
  }
  const auto rows = effects(sys.db());
  for (const auto& [key, pids] : rows) f.rows += static_cast<int>(pids.size());
  f.dup = duplicates(rows);
  if (auto it = rows.find("crash-1"); it != rows.end()) {
    f.crash_rows = static_cast<int>(it->second.size());
    for (long pid : it->second) f.crash_rows_by_survivor += pid == survivor->started_pid();
  }
  return f;
}

void print(const char* title, const KillFigures& f) {
  fmt::print(
      "{}\n    sent={} ok={} (errors: {}) effect rows={} duplicates={}; crash key: rows={} ({} by the survivor)\n"
      "    retried on fresh processes: ok={} same answer={} arrivals={} new effects={}\n"
      "    premises: the victim wrote the crash key's row then died by signal {}; the survivor got it "
      "redelivered (attempt 1): {}\n",
      title, f.sent, f.ok, f.errors, f.rows, f.dup, f.crash_rows, f.crash_rows_by_survivor, f.retried_ok,
      f.retried_same, f.retried_arrivals, f.new_effects_on_retry, f.signal, f.redelivered ? "yes" : "no");
}

}  // namespace

TEST_CASE("inbox: concurrent copies of a key on two instances sharing the database run it once, one answer") {
  System sys("inbox");
  auto a = sys.start("a");
  auto b = sys.start("b");
  tern::Client client;
  constexpr int kKeys = 60, kCopies = 4;
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i)
    for (int c = 0; c < kCopies; ++c) keys.push_back(fmt::format("key{}", i));
  auto results = sys.call_all(client, keys);
  int ok = 0, differing = 0;
  std::map<std::string, std::string> answer;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!results[i].ok()) continue;
    ++ok;
    auto [it, inserted] = answer.emplace(keys[i], results[i]->instance());
    differing += !inserted && it->second != results[i]->instance();
  }
  std::map<std::string, std::set<long>> arrived_at;
  for (const auto& l : read_ledger(sys.ledger()))
    if (l.what == "arrive") arrived_at[l.key].insert(l.pid);
  int both = 0;
  for (const auto& [key, pids] : arrived_at) both += pids.size() == 2;
  const auto rows = effects(sys.db());
  int total = 0;
  for (const auto& [key, pids] : rows) total += static_cast<int>(pids.size());
  fmt::print(
      "inbox: {} keys x {} concurrent copies on two instances\n    sent={} ok={} (errors: {}) effect rows={} "
      "duplicates={} keys answered differently={}\n    premises: keys whose copies reached both instances={}\n",
      kKeys, kCopies, keys.size(), ok, error_summary(results), total, duplicates(rows), differing, both);
  CHECK(ok == static_cast<int>(keys.size()));
  CHECK(total == kKeys);
  CHECK(duplicates(rows) == 0);
  CHECK(differing == 0);
  CHECK(both > 0);
}

TEST_CASE("inbox: a key whose instance is killed between its write and its commit is applied once, by the redelivery") {
  const KillFigures f = kill_between_write_and_commit("inbox");
  print("inbox: kill -9 between the write and the commit", f);
  CHECK(f.ok == f.sent);
  CHECK(f.dup == 0);
  CHECK(f.rows == f.sent);
  CHECK(f.crash_rows == 1);
  CHECK(f.crash_rows_by_survivor == 1);
  CHECK(f.retried_ok == f.sent);
  CHECK(f.retried_same == f.sent);
  CHECK(f.new_effects_on_retry == 0);
  // Premises: the kill fell between the write and the commit, and the key
  // came back by redelivery; the retries reached processes that ran nothing.
  CHECK(f.signal == SIGKILL);
  CHECK(f.victim_wrote_it);
  CHECK(f.redelivered);
  CHECK(f.retried_arrivals > 0);
}

// The same scenario against the design the inbox replaces: the key kept
// apart from the write (SqliteIdempotencyStore, in its own transaction after
// the handler's). The checker must see the duplicate.
TEST_CASE("inbox: the checker catches a key recorded in its own transaction after the write when the instance dies between") {
  const KillFigures f = kill_between_write_and_commit("store");
  print("store (broken on purpose): kill -9 between the write and the key's record", f);
  CHECK(f.signal == SIGKILL);
  CHECK(f.victim_wrote_it);
  CHECK(f.redelivered);
  CHECK(f.dup > 0);
  CHECK(f.crash_rows == 2);
}
