// The cluster test: a service of two instances on quorum queues keeps
// answering calls, and loses no confirmed event, when the broker node that
// holds the most of it is killed (kill -9) under load.
//
//   cluster_test SERVICE_BINARY [REPORT_FILE]
//
// Needs TERN_AMQP_URL (every node's URL) and TERN_CLUSTER_DIR, as
// rabbit_cluster_start exports them; tests/cluster/cluster_test.sh starts
// the cluster and always stops it. Prints the figures, exits 0 if they hold.
#include <fmt/format.h>

#include <atomic>
#include <boost/fiber/all.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../fault/service_process.h"
#include "probe.pb.h"
#include "tern/tern.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kService = "test.cluster";
const std::string kSubscription = kService + ".on.probe.hop";
constexpr auto kCallTimeout = 5s;

// stdout of `bash -c 'source rabbit.sh && COMMAND'`.
std::string shell(const std::string& command, int* status = nullptr) {
  const std::string cmd =
      "bash -c 'source " TERN_SOURCE_DIR "/scripts/lib/rabbit.sh && " + command + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int rc = pclose(p);
  if (status != nullptr) *status = rc;
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

std::vector<std::vector<std::string>> rows(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> cols;
    std::istringstream fields(line);
    for (std::string f; std::getline(fields, f, '\t');) cols.push_back(f);
    if (!cols.empty()) out.push_back(cols);
  }
  return out;
}

struct Node {
  int index = 0;
  std::string name;
  std::string port;                // its AMQP port
  std::vector<std::string> leads;  // our queues whose leader it is
  int connections = 0;             // our AMQP connections to it
};

// The cluster's nodes, with what each holds of the test's service now.
std::vector<Node> survey(int ask) {
  std::vector<Node> nodes;
  const std::string dir = std::getenv("TERN_CLUSTER_DIR");
  for (int i = 1;; ++i) {
    const std::string name = read_file(fmt::format("{}/{}/node", dir, i));
    if (name.empty()) break;
    const std::string url = read_file(fmt::format("{}/{}/url", dir, i));
    const size_t colon = url.rfind(':');
    nodes.push_back({i, name, url.substr(colon + 1, url.find('/', colon) - colon - 1), {}, 0});
  }
  const auto queues = rows(shell(
      fmt::format("rabbit_cluster_ctl {} -q list_queues --no-table-headers name leader", ask)));
  for (const auto& q : queues)
    for (Node& n : nodes)
      if (q.size() == 2 && q[1] == n.name && (q[0] == kService || q[0] == kSubscription))
        n.leads.push_back(q[0]);
  const auto conns = rows(
      shell(fmt::format("rabbit_cluster_ctl {} -q list_connections --no-table-headers port", ask)));
  for (const auto& c : conns)
    for (Node& n : nodes)
      if (c[0] == n.port) ++n.connections;
  return nodes;
}

// What the load saw. Atomics are read by the controlling thread while the
// client's fibers run; the rest only after they finished.
struct Figures {
  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};
  Clock::time_point kill_time;
  std::atomic<int> ok{0}, streak{0}, confirmed_count{0}, confirmed_after_kill{0};
  std::string pid_a, pid_b;  // the instances
  std::atomic<int> answered_after_kill_a{0}, answered_after_kill_b{0};
  int sent = 0, failed_before_kill = 0, late = 0;
  std::map<std::string, int> errors;                      // by code
  std::chrono::milliseconds last_failure_after_kill{-1};  // -1: none
  int published = 0;
  std::map<std::string, int> not_confirmed;  // by code
  std::vector<std::string> confirmed;
};

void call_loop(Figures& f) {
  while (!f.stop) {
    probe::ProbeRequest req;
    req.set_sleep_ms(5);
    const std::string key = tern::new_trace_id();
    req.set_payload(key);
    auto ctx = tern::Context::with_timeout(kCallTimeout);
    const auto start = Clock::now();
    auto r = tern::call<probe::ProbeResponse>(ctx, kService, "work", req,
                                              {.timeout = kCallTimeout,
                                               .max_attempts = 4,
                                               .attempt_timeout = 1500ms,
                                               .idempotency_key = key});
    const auto now = Clock::now();
    ++f.sent;
    if (now - start > kCallTimeout + 100ms) ++f.late;
    const bool after_kill = f.killed;  // (then kill_time is set)
    const auto since_kill =
        after_kill ? std::chrono::duration_cast<std::chrono::milliseconds>(now - f.kill_time)
                   : std::chrono::milliseconds(0);
    if (r.ok()) {
      ++f.ok;
      ++f.streak;
      if (after_kill) {
        if (r->instance() == f.pid_a) ++f.answered_after_kill_a;
        if (r->instance() == f.pid_b) ++f.answered_after_kill_b;
      }
    } else {
      f.streak = 0;
      f.errors[std::string(tern::code_name(r.code()))]++;
      if (!after_kill)
        ++f.failed_before_kill;
      else
        f.last_failure_after_kill = since_kill;
      if (f.errors[std::string(tern::code_name(r.code()))] == 1)
        fmt::print("  first call that failed with {}: {}\n", tern::code_name(r.code()),
                   r.error().to_string());
      boost::this_fiber::sleep_for(50ms);  // as a caller would, rather than spin on a fast failure
    }
  }
}

void publish_loop(Figures& f, int publisher) {
  for (int n = 0; !f.stop; ++n) {
    probe::Hop hop;
    hop.set_service(fmt::format("ev-{}-{}", publisher, n));
    auto ctx = tern::Context::with_timeout(5s);
    const bool after_kill = f.killed;  // confirmed after: published after the kill
    tern::Error e = tern::publish(ctx, hop);
    ++f.published;
    if (e.ok()) {
      f.confirmed.push_back(hop.service());
      ++f.confirmed_count;
      if (after_kill) ++f.confirmed_after_kill;
    } else {
      if (++f.not_confirmed[std::string(tern::code_name(e.code))] == 1)
        fmt::print("  first event not confirmed with {}: {}\n", tern::code_name(e.code),
                   e.to_string());
    }
    boost::this_fiber::sleep_for(e.ok() ? 5ms : 100ms);
  }
}

// Waits up to `limit` for `done()`; whether it came true.
template <class F>
bool await(std::chrono::seconds limit, F done) {
  const auto until = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

int run(int argc, char** argv) {
  char tmpl[] = "/tmp/tern-cluster-test.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string events_log = dir + "/events.log";
  const std::vector<std::string> env = {"FAULT_SERVICE=" + kService,
                                        "FAULT_EVENT_LOG=" + events_log,
                                        "TERN_REQUEST_QUEUE_TYPE=quorum",
                                        "TERN_EVENT_QUEUE_TYPE=quorum",
                                        "TERN_THREADS=1",
                                        "TERN_HEARTBEAT_S=2"};
  std::vector<std::string> failures;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) failures.push_back(what);
    return ok;
  };
  Figures f;
  std::string victim_line;
  std::set<std::string> wanted;     // confirmed events
  std::map<std::string, int> seen;  // received events: how often
  auto received_all = [&] {
    wanted = {f.confirmed.begin(), f.confirmed.end()};
    seen.clear();
    std::istringstream lines(read_file(events_log));
    for (std::string line; std::getline(lines, line);) seen[line]++;
    for (const auto& id : wanted)
      if (!seen.count(id)) return false;
    return true;
  };
  {
    ServiceProcess a(argv[1], dir + "/a.log", env);
    ServiceProcess b(argv[1], dir + "/b.log", env);
    f.pid_a = std::to_string(a.pid());
    f.pid_b = std::to_string(b.pid());
    tern::Options o = tern::Options::from_env();
    o.threads = 1;
    o.heartbeat_s = 2;
    tern::Client client(o, "cluster.client");
    // The nodes without the login (TERN_AMQP_URL holds tern-admin's password).
    const char* nodes = std::getenv("TERN_RABBIT_URL");
    fmt::print("cluster: {}\n", nodes != nullptr ? nodes : "?");

    std::thread load([&] {
      client.run([&] {
        std::vector<boost::fibers::fiber> fibers;
        for (int i = 0; i < 8; ++i) fibers.emplace_back([&] { call_loop(f); });
        for (int i = 0; i < 2; ++i) fibers.emplace_back([&, i] { publish_loop(f, i); });
        for (auto& fb : fibers) fb.join();
      });
    });
    // Under way: calls answered and events confirmed, before any fault.
    const bool warm =
        check(await(60s, [&] { return f.ok >= 200 && f.confirmed_count >= 100; }),
              "no steady load before the kill (200 calls ok, 100 events confirmed) within 60 s");
    if (warm) {
      // The victim: the node leading most of the service's queues, then
      // holding most of our connections.
      auto nodes = survey(1);
      if (nodes.empty()) throw std::runtime_error("no nodes in TERN_CLUSTER_DIR");
      const Node* victim = &nodes.front();
      for (const Node& n : nodes)
        if (std::pair(n.leads.size(), n.connections) >
            std::pair(victim->leads.size(), victim->connections))
          victim = &n;
      int total = 0;
      for (const Node& n : nodes) total += n.connections;
      std::string leads;
      for (const auto& q : victim->leads) leads += (leads.empty() ? "" : ", ") + q;
      victim_line = fmt::format(
          "kill -9 of broker node {} of {} (leader of: {}; {} of our {} connections)",
          victim->index, nodes.size(), leads.empty() ? "none" : leads, victim->connections, total);
      fmt::print("{}\n", victim_line);
      std::fflush(stdout);
      f.kill_time = Clock::now();
      f.killed = true;
      int status = 0;
      std::string out = shell(fmt::format("rabbit_cluster_kill {}", victim->index), &status);
      check(status == 0, "rabbit_cluster_kill failed: " + out);
      const int survivor = victim->index == 1 ? 2 : 1;

      // Calls succeed again, on both instances, and events are confirmed again.
      check(await(90s,
                  [&] {
                    return f.answered_after_kill_a >= 50 && f.answered_after_kill_b >= 50 &&
                           f.streak >= 300 && f.confirmed_after_kill >= 100;
                  }),
            "within 90 s of the kill: no 300 calls in a row ok, both instances answering 50, and "
            "100 events "
            "confirmed");
      for (const Node& n : survey(survivor))
        if (!n.leads.empty())
          fmt::print("  afterwards node {} leads {}\n", n.index, fmt::join(n.leads, ", "));
    }
    f.stop = true;
    load.join();
    // Every confirmed event reaches the subscriber (the instances).
    check(await(60s, received_all), "not every confirmed event was received within 60 s");
  }
  int received = 0, lost = 0, duplicates = 0, unconfirmed_received = 0;
  for (const auto& id : wanted) (seen.count(id) ? received : lost)++;
  for (const auto& [id, n] : seen) {
    duplicates += n - 1;
    if (!wanted.count(id)) ++unconfirmed_received;
  }

  std::string errors;
  for (const auto& [code, n] : f.errors) errors += fmt::format(" {}={}", code, n);
  std::string not_confirmed;
  for (const auto& [code, n] : f.not_confirmed) not_confirmed += fmt::format(" {}={}", code, n);
  for (const auto& [code, n] : f.errors)
    check(code == "UNAVAILABLE" || code == "DEADLINE_EXCEEDED",
          fmt::format("calls failed with {}", code));
  check(f.failed_before_kill == 0,
        fmt::format("{} calls failed before the kill", f.failed_before_kill));
  check(f.late == 0, fmt::format("{} calls ended later than their deadline + 100 ms", f.late));
  check(lost == 0, fmt::format("{} confirmed events never reached the subscriber", lost));

  const bool ok = failures.empty();
  const std::string switched =
      f.last_failure_after_kill.count() < 0
          ? std::string("no call failed after the kill")
          : fmt::format("the last failure {} ms after the kill", f.last_failure_after_kill.count());
  std::string report = fmt::format(
      "{} {} under load\n"
      "  calls: sent={} ok={} failed:{} late={}; {}, then {} in a row ok; answered after the kill "
      "by "
      "instance a: {}, b: {}\n"
      "  events: published={} confirmed={} not confirmed:{}; confirmed and received={} (+{} not "
      "confirmed) "
      "duplicates={} lost={}\n",
      ok ? "ok:" : "FAILED:", victim_line.empty() ? "a broker node kill" : victim_line, f.sent,
      f.ok.load(), errors.empty() ? " none" : errors, f.late, switched, f.streak.load(),
      f.answered_after_kill_a.load(), f.answered_after_kill_b.load(), f.published,
      f.confirmed.size(), not_confirmed.empty() ? " none" : not_confirmed, received,
      unconfirmed_received, duplicates, lost);
  for (const auto& why : failures) report += "  FAILED: " + why + "\n";
  fmt::print("{}", report);
  if (argc == 3) {
    if (std::FILE* out = std::fopen(argv[2], "w")) {
      std::fputs(report.c_str(), out);
      std::fclose(out);
    }
  }
  if (ok)
    std::system(("rm -rf " + dir).c_str());
  else
    fmt::print("logs kept in {}\n", dir);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || !std::getenv("TERN_AMQP_URL") || !std::getenv("TERN_CLUSTER_DIR")) {
    fmt::print(
        stderr,
        "usage: cluster_test SERVICE_BINARY [REPORT_FILE] (see tests/cluster/cluster_test.sh)\n");
    return 2;
  }
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // after the instances were killed, on the way out
    fmt::print("FAILED: {}\n", e.what());
    return 1;
  }
}
