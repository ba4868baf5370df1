// Faults of the link between the broker and its clients, in the network
// namespaces tests/fault/private_broker.sh makes: the broker in one, this
// process and the instances in the other, a veth between them. The suite
// runs inside the clients' namespace, so iptables and tc here act on that
// namespace only; FAULT_VETH names its end of the veth, FAULT_NETNS_BROKER
// and FAULT_VETH_BROKER the other.
#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "broker_faults.h"
#include "ledger.h"
#include "suite.h"

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

double since(Clock::time_point from, Clock::time_point to) { return std::chrono::duration<double>(to - from).count(); }


// How often the broker logged that a client missed its heartbeats.
int broker_missed_heartbeats() {
  std::ifstream in(env("TERN_RABBIT_DIR") + "/log/" + env("TERN_RABBIT_NODE") + ".log");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  int n = 0;
  for (size_t at = 0; (at = text.find("missed heartbeats from client", at)) != std::string::npos; ++at) ++n;
  return n;
}

// Packets the rules of `chain` whose spec contains `mark` dropped so far.
long long dropped(const std::string& chain, const std::string& mark) {
  std::string out;
  sh("iptables -L " + chain + " -v -x -n", &out);
  long long n = 0;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(mark) == std::string::npos) continue;
    std::istringstream f(line);
    long long packets = 0;
    f >> packets;
    n += packets;
  }
  return n;
}

}  // namespace

void link_half_open(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("half-open"), veth = env("FAULT_VETH");
  constexpr int kHeartbeat = 2;
  Instance a("half-a", path), b("half-b", path);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  const std::string in = "INPUT -i " + veth + " -j DROP", out = "OUTPUT -o " + veth + " -j DROP";
  int add_rc = -1, del_rc = -1, broker_before = 0, broker_noticed = 0;
  long long drops = 0;
  Clock::time_point drop_at{}, let_through_at{};
  std::optional<Clock::time_point> a_lost, b_lost;
  auto calls = run_load(client, attempts, {.calls = 600, .concurrency = 20, .sleep_ms = 20, .fault = [&] {
    broker_before = broker_missed_heartbeats();
    drop_at = Clock::now();
    add_rc = sh("iptables -I " + in + " && iptables -I " + out);
    // Held past 2 heartbeats: until both sides noticed (the broker counts
    // our 5 connections: 2 per instance, 1 of the client), 15 s at most.
    const auto until = drop_at + 15s;
    while (Clock::now() < until) {
      if (!a_lost && a.output().find("missed heartbeats") != std::string::npos) a_lost = Clock::now();
      if (!b_lost && b.output().find("missed heartbeats") != std::string::npos) b_lost = Clock::now();
      broker_noticed = broker_missed_heartbeats() - broker_before;
      if (Clock::now() > drop_at + std::chrono::seconds(3 * kHeartbeat) && a_lost && b_lost && broker_noticed >= 5)
        break;
      std::this_thread::sleep_for(10ms);
    }
    drops = dropped("INPUT", "DROP") + dropped("OUTPUT", "DROP");
    del_rc = sh("iptables -D " + in + " && iptables -D " + out);
    let_through_at = Clock::now();
  }});
  const auto client_lost = attempts.link_failed("missed heartbeats", drop_at);
  const bool a_back = await_output(a, "reconnected to the broker"), b_back = await_output(b, "reconnected to the broker");
  const bool served = await_service(client);
  auto after = run_load(client, attempts, {.calls = 200, .concurrency = 10, .sleep_ms = 5});
  const ledger::Ledger l = ledger::settle(path, pids);
  s.check(calls, l, pids, {.gap_keys = faults::applied_by_two(l.only(calls.tag)),
                           .gap = "applied by one instance, whose reply or ack was lost with its half-open "
                                  "connection, and again by the other on the retry or redelivery"});
  s.check(after, l, pids, {.all_ok = true, .label = "afterwards, "});
  auto secs = [&](const std::optional<Clock::time_point>& t) {
    return t ? fmt::format("{:.2f} s", since(drop_at, *t)) : std::string("never");
  };
  const double bound = 2 * kHeartbeat + 2;
  s.line(fmt::format("detected (DROP to the lost connection, heartbeat {} s): instance a {}, b {}, client {} (bound "
                     "{:.0f} s); the broker logged {} clients' missed heartbeats",
                     kHeartbeat, secs(a_lost), secs(b_lost), secs(client_lost), bound, broker_noticed));
  s.line(fmt::format("premises: DROP both ways on {} (rc={}, removed rc={}) for {:.1f} s, {} packets dropped; both "
                     "instances logged a reconnect: {}",
                     veth, add_rc, del_rc, since(drop_at, let_through_at), drops, a_back && b_back ? "yes" : "no"));
  for (const std::optional<Clock::time_point>* t :
       std::initializer_list<const std::optional<Clock::time_point>*>{&a_lost, &b_lost, &client_lost})
    s.expect(t->has_value() && since(drop_at, **t) <= bound, "each process noticed within 2 x heartbeat + 2 s");
  s.expect(broker_noticed >= 5, "the broker noticed every connection");
  s.expect(add_rc == 0 && del_rc == 0 && drops > 0, "the link dropped everything, then nothing");
  s.expect(a_back && b_back && served, "the instances and the client reconnected");
}

void link_slow_lossy(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("lossy"), veth = env("FAULT_VETH");
  const std::string broker_ns = env("FAULT_NETNS_BROKER"), broker_veth = env("FAULT_VETH_BROKER");
  Instance a("lossy-a", path), b("lossy-b", path);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  // Both ways: 8 Mbit/s through a token bucket, and 3% of packets dropped.
  const std::string tbf = " root tbf rate 8mbit burst 32kb latency 100ms";
  const std::string loss = " -m statistic --mode random --probability 0.03 -j DROP";
  int rc = sh("tc qdisc add dev " + veth + tbf) | sh("ip netns exec " + broker_ns + " tc qdisc add dev " + broker_veth + tbf) |
           sh("iptables -I INPUT -i " + veth + loss) | sh("iptables -I OUTPUT -o " + veth + loss);
  std::string qdisc;
  sh("tc qdisc show dev " + veth, &qdisc);
  const int links_before = attempts.link_failures();
  const auto start = Clock::now();
  auto calls = run_load(client, attempts, {.calls = 600, .concurrency = 20, .sleep_ms = 20, .pad_bytes = 16 * 1024});
  const double took = since(start, Clock::now());
  const long long drops = dropped("INPUT", "statistic") + dropped("OUTPUT", "statistic");
  const int cleanup_rc = sh("iptables -D INPUT -i " + veth + loss) | sh("iptables -D OUTPUT -o " + veth + loss) |
                         sh("tc qdisc del dev " + veth + " root") |
                         sh("ip netns exec " + broker_ns + " tc qdisc del dev " + broker_veth + " root");
  const ledger::Ledger l = ledger::settle(path, pids);
  s.check(calls, l, pids, {.gap_keys = faults::retried_on_two(l.only(calls.tag)),
                           .gap = "run by one instance past the caller's attempt timeout on the slow link, and by "
                                  "the other on the caller's retry"});
  s.line(fmt::format("premises: tbf on both ends ({}), 3% random DROP both ways: {} packets dropped; set up rc={}, "
                     "removed rc={}; the load took {:.1f} s; the client's link failed {} times",
                     qdisc.find("tbf") != std::string::npos ? "shown by tc" : "NOT shown by tc", drops, rc, cleanup_rc,
                     took, attempts.link_failures() - links_before));
  s.expect(rc == 0 && cleanup_rc == 0 && qdisc.find("tbf") != std::string::npos, "the link was slowed and made lossy");
  s.expect(drops > 0, "packets were dropped");
}
