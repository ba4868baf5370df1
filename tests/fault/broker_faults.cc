// The broker's own faults: killed (kill -9) and restarted on its data dir
// with persistent events in flight, and frozen (SIGSTOP) past its
// heartbeats with large requests in flight. The node is the private one of
// tests/fault/private_broker.sh: rabbit_kill9, rabbit_restart and
// rabbit_vm_pid act on it.
#include "broker_faults.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/fiber/all.hpp>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "ledger.h"
#include "suite.h"

namespace faults {

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int http_get_ms(const std::string& host, int port) {
  const auto start = Clock::now();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[512];
      for (ssize_t n; got.find("\r\n") == std::string::npos && (n = recv(fd, buf, sizeof buf, 0)) > 0;)
        got.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  return got.starts_with("HTTP/1.1 200") && ms <= 1000 ? static_cast<int>(ms) : -1;
}

std::set<std::string> applied_by_two(const ledger::Ledger& l) {
  std::map<std::string, std::set<pid_t>> by;
  for (const auto& line : l.lines)
    if (line.effect) by[line.key].insert(line.pid);
  std::set<std::string> keys;
  for (const auto& [k, pids] : by)
    if (pids.size() > 1) keys.insert(k);
  return keys;
}

std::set<std::string> retried_on_two(const ledger::Ledger& l) {
  std::map<std::string, std::set<std::pair<pid_t, uint32_t>>> by;
  for (const auto& line : l.lines)
    if (line.effect) by[line.key].insert({line.pid, line.attempt});
  std::set<std::string> keys;
  for (const auto& [k, effects] : by) {
    std::set<pid_t> pids;
    std::set<uint32_t> attempts;
    for (const auto& [pid, attempt] : effects) {
      pids.insert(pid);
      attempts.insert(attempt);
    }
    if (pids.size() > 1 && attempts.size() > 1) keys.insert(k);
  }
  return keys;
}

}  // namespace faults

namespace {

double since(Clock::time_point from, Clock::time_point to) { return std::chrono::duration<double>(to - from).count(); }

// Persistent events published with confirms from fibers of a client of
// their own, until stop; what each publish was told, and when.
struct Publishing {
  std::atomic<bool> stop{false};
  std::atomic<int> confirmed_count{0}, in_flight{0};
  std::mutex mu;
  std::vector<std::string> confirmed;
  std::map<std::string, int> not_confirmed;  // by code
  int published = 0;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> spans;  // of every publish
};

void publish_events(tern::Client& pub, Publishing& p, int fibers) {
  pub.run([&] {
    std::vector<boost::fibers::fiber> all;
    for (int i = 0; i < fibers; ++i)
      all.emplace_back([&, i] {
        for (int n = 0; !p.stop; ++n) {
          probe::Hop hop;
          hop.set_service(fmt::format("ev-{}-{}-{}", tern::new_span_id(), i, n));
          auto ctx = tern::Context::with_timeout(5s);
          const auto start = Clock::now();
          ++p.in_flight;
          tern::Error e = tern::publish(ctx, hop);
          --p.in_flight;
          {
            // Never held across a fiber switch: a std::mutex would block
            // the thread, and every other fiber on it.
            std::lock_guard<std::mutex> lock(p.mu);
            ++p.published;
            p.spans.emplace_back(start, Clock::now());
            if (e.ok()) {
              p.confirmed.push_back(hop.service());
              ++p.confirmed_count;
            } else {
              ++p.not_confirmed[std::string(tern::code_name(e.code))];
            }
          }
          if (!e.ok()) boost::this_fiber::sleep_for(100ms);
        }
      });
    for (auto& f : all) f.join();
  });
}

std::map<std::string, int> lines_of(const std::string& path) {
  std::map<std::string, int> seen;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) seen[line]++;
  return seen;
}

}  // namespace

void broker_kill9(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("broker-kill"), events = g_dir + "/broker-kill.events";
  // Slow subscribers: confirmed events pile up in the queue, so the kill
  // finds them on disk, not only in flight.
  const std::vector<std::string> env = {"FAULT_EVENT_LOG=" + events, "FAULT_EVENT_SLEEP_MS=50"};
  Instance a("bkill-a", path, env), b("bkill-b", path, env);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  tern::Options po = tern::Options::from_env();
  po.threads = 1;
  po.heartbeat_s = 2;
  tern::Client pub(po, "fault.publisher");
  Publishing p;
  std::thread publisher([&] { publish_events(pub, p, 8); });
  std::string vm_before, vm_after;
  int kill_rc = -1, restart_rc = -1, in_flight_at_kill = 0, confirmed_before_kill = 0, queued_at_kill = -1;
  Clock::time_point kill_at{}, back_at{};
  const int link_failures = attempts.link_failures();
  // Enough calls to outlast the rabbitmqctl calls before the kill (~1 s each).
  auto calls = run_load(client, attempts, {.calls = 4000, .concurrency = 20, .sleep_ms = 20, .fault = [&] {
    for (auto t = Clock::now() + 20s; p.confirmed_count < 100 && Clock::now() < t;) std::this_thread::sleep_for(5ms);
    rabbit("rabbit_vm_pid", &vm_before);
    std::string depth;
    rabbit("rabbit_ctl -q list_queues --no-table-headers name messages", &depth);
    const size_t at = depth.find("test.fault.on.probe.hop\t");
    queued_at_kill = at == std::string::npos ? -1 : std::atoi(depth.c_str() + at + 24);
    confirmed_before_kill = p.confirmed_count;
    in_flight_at_kill = p.in_flight;
    kill_at = Clock::now();
    kill_rc = rabbit("rabbit_kill9");
    restart_rc = rabbit("rabbit_restart");   // same name, ports and data dir
    back_at = Clock::now();
    rabbit("rabbit_vm_pid", &vm_after);
  }});
  // Publishes go on until some are confirmed by the restarted broker.
  for (auto t = Clock::now() + 30s; Clock::now() < t; std::this_thread::sleep_for(20ms)) {
    std::lock_guard<std::mutex> lock(p.mu);
    int after = 0;
    for (const auto& [start, end] : p.spans) after += start > back_at;
    if (after >= 50) break;
  }
  p.stop = true;
  publisher.join();
  const bool a_back = await_output(a, "reconnected to the broker"), b_back = await_output(b, "reconnected to the broker");
  const bool served = await_service(client);
  auto after = run_load(client, attempts, {.calls = 200, .concurrency = 10, .sleep_ms = 5});
  // Every confirmed event reaches the subscribers (bounded wait).
  const std::set<std::string> wanted(p.confirmed.begin(), p.confirmed.end());
  std::map<std::string, int> seen;
  for (auto t = Clock::now() + 30s; Clock::now() < t; std::this_thread::sleep_for(50ms)) {
    seen = lines_of(events);
    bool all = true;
    for (const auto& id : wanted) all = all && seen.count(id) > 0;
    if (all) break;
  }
  int lost = 0, duplicates = 0, unconfirmed_received = 0, spanning_kill = 0, confirmed_after = 0;
  for (const auto& id : wanted) lost += seen.count(id) == 0;
  for (const auto& [id, n] : seen) {
    duplicates += n - 1;
    unconfirmed_received += wanted.count(id) == 0;
  }
  for (const auto& [start, end] : p.spans) spanning_kill += start < kill_at && end > kill_at;
  confirmed_after = static_cast<int>(p.confirmed.size()) - confirmed_before_kill;
  const ledger::Ledger l = ledger::settle(path, pids);
  s.check(calls, l, pids, {.gap_keys = faults::applied_by_two(l.only(calls.tag)),
                           .gap = "applied by one instance, whose reply or ack the dead broker lost, and again by the "
                                  "other on the retry or redelivery"});
  s.check(after, l, pids, {.all_ok = true, .label = "afterwards, "});
  std::string nc;
  for (const auto& [code, n] : p.not_confirmed) nc += fmt::format(" {}={}", code, n);
  auto trim = [](std::string t) { return t.substr(0, t.find_last_not_of(" \n") + 1); };
  s.line(fmt::format("events: published={} confirmed={} ({} before the kill) not confirmed:{}; of the confirmed: "
                     "received={} lost={}; duplicates={}, received though not confirmed={}",
                     p.published, wanted.size(), confirmed_before_kill, nc.empty() ? " none" : nc,
                     wanted.size() - lost, lost, duplicates, unconfirmed_received));
  s.line(fmt::format("premises: beam.smp {} killed (rabbit_kill9 rc={}) with {} events queued in "
                     "test.fault.on.probe.hop and {} publishes in flight ({} spanned the kill); restarted on its data dir as {} (rc={}) {:.1f} s later; both instances logged a "
                     "reconnect: {}; events confirmed after the kill: {}",
                     trim(vm_before), kill_rc, queued_at_kill, in_flight_at_kill, spanning_kill, trim(vm_after), restart_rc,
                     since(kill_at, back_at), a_back && b_back ? "yes" : "no", confirmed_after));
  s.expect(lost == 0, "every confirmed event was delivered");
  s.expect(kill_rc == 0 && restart_rc == 0 && !vm_before.empty() && vm_after != vm_before,
           "the broker's VM was killed and a new one started");
  s.expect(in_flight_at_kill > 0 && spanning_kill > 0, "events were in flight at the kill");
  s.expect(queued_at_kill > 0, "confirmed events waited in the subscription's queue at the kill");
  s.expect(confirmed_before_kill > 0 && confirmed_after > 0, "events confirmed before the kill and after the restart");
  s.expect(a_back && b_back && served, "the instances and the client reconnected");
  const int lost_links = attempts.link_failures() - link_failures;
  s.line(fmt::format("the client's calls failed on its lost link {} times", lost_links));
  s.expect(lost_links > 0, "calls were in flight at the kill");
}

void broker_sigstop(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("broker-stop");
  constexpr int kHeartbeat = 2;  // the instances' (Instance) and the client's
  const int port_a = faults::free_port(), port_b = faults::free_port();
  Instance a("bstop-a", path, {fmt::format("TERN_METRICS_PORT={}", port_a)});
  Instance b("bstop-b", path, {fmt::format("TERN_METRICS_PORT={}", port_b)});
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  std::string vm;
  rabbit("rabbit_vm_pid", &vm);
  const pid_t beam = static_cast<pid_t>(std::atoll(vm.c_str()));
  Clock::time_point stop_at{}, cont_at{};
  std::optional<Clock::time_point> a_lost, b_lost;
  int probes = 0, probes_failed = 0, slowest_ms = 0, stopped_state = 0;
  auto calls = run_load(client, attempts, {.calls = 600, .concurrency = 20, .sleep_ms = 20, .pad_bytes = 256 * 1024,
                                           .fault = [&] {
    stop_at = Clock::now();
    kill(beam, SIGSTOP);
    // 3 heartbeats frozen: watch the instances' logs for the lost link, and
    // their HTTP ports, which their threads answer meanwhile.
    auto next_probe = Clock::now();
    while (Clock::now() < stop_at + std::chrono::seconds(3 * kHeartbeat)) {
      if (!a_lost && a.output().find("missed heartbeats") != std::string::npos) a_lost = Clock::now();
      if (!b_lost && b.output().find("missed heartbeats") != std::string::npos) b_lost = Clock::now();
      if (Clock::now() >= next_probe) {
        for (int port : {port_a, port_b}) {
          const int ms = faults::http_get_ms("127.0.0.1", port);
          ++probes;
          if (ms < 0) ++probes_failed;
          slowest_ms = std::max(slowest_ms, ms);
        }
        std::ifstream st("/proc/" + std::to_string(beam) + "/stat");
        std::string text((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
        stopped_state += text.find(") T ") != std::string::npos;
        next_probe += 250ms;
      }
      std::this_thread::sleep_for(10ms);
    }
    kill(beam, SIGCONT);
    cont_at = Clock::now();
  }});
  const auto client_lost = attempts.link_failed("missed heartbeats", stop_at);
  const bool a_back = await_output(a, "reconnected to the broker"), b_back = await_output(b, "reconnected to the broker");
  const bool served = await_service(client);
  auto after = run_load(client, attempts, {.calls = 200, .concurrency = 10, .sleep_ms = 5, .pad_bytes = 256 * 1024});
  const ledger::Ledger l = ledger::settle(path, pids);
  s.check(calls, l, pids, {.gap_keys = faults::applied_by_two(l.only(calls.tag)),
                           .gap = "applied by one instance, whose reply or ack was lost with its connection to the "
                                  "frozen broker, and again by the other on the retry or redelivery"});
  s.check(after, l, pids, {.all_ok = true, .label = "afterwards, "});
  auto secs = [&](const std::optional<Clock::time_point>& t) {
    return t ? fmt::format("{:.2f} s", since(stop_at, *t)) : std::string("never");
  };
  const double bound = 2 * kHeartbeat + 2;
  s.line(fmt::format("detected (SIGSTOP to the lost connection, heartbeat {} s): instance a {}, b {}, client {} "
                     "(bound {:.0f} s)",
                     kHeartbeat, secs(a_lost), secs(b_lost), secs(client_lost), bound));
  s.line(fmt::format("HTTP /metrics while frozen: {} of {} answered within 1 s, slowest {} ms", probes - probes_failed,
                     probes, slowest_ms));
  s.line(fmt::format("premises: beam.smp {} in state T at {} of {} looks; SIGCONT after {:.1f} s; both instances "
                     "logged a reconnect: {}; 256 KiB requests",
                     beam, stopped_state, probes / 2, since(stop_at, cont_at), a_back && b_back ? "yes" : "no"));
  for (const std::optional<Clock::time_point>* t :
       std::initializer_list<const std::optional<Clock::time_point>*>{&a_lost, &b_lost, &client_lost})
    s.expect(t->has_value() && since(stop_at, **t) <= bound, "each process noticed within 2 x heartbeat + 2 s");
  s.expect(probes > 0 && probes_failed == 0, "the instances' HTTP ports answered while the broker was frozen");
  s.expect(beam > 0 && stopped_state > 0, "the broker was stopped");
  s.expect(a_back && b_back && served, "the instances and the client reconnected after SIGCONT");
}
