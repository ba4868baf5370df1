#include "poison_event.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "probe.pb.h"
#include "suite.h"

namespace {

// The messages in `queue`, from rabbitmqctl, or -1.
int queue_messages(const std::string& queue) {
  std::string out;
  if (rabbit("rabbit_ctl -q list_queues --no-table-headers name messages 2>/dev/null", &out) != 0) return -1;
  std::istringstream lines(out);
  std::string name;
  int messages = 0;
  while (lines >> name >> messages)
    if (name == queue) return messages;
  return -1;
}

// The event ledger: per event name, the pids that began it and the pids
// that finished it.
struct EventLedger {
  std::map<std::string, std::multiset<pid_t>> begun, done;
  static EventLedger read(const std::string& path) {
    EventLedger l;
    std::ifstream f(path);
    std::string what, name;
    pid_t pid = 0;
    while (f >> what >> name >> pid) (what == "begin" ? l.begun : l.done)[name].insert(pid);
    return l;
  }
};

}  // namespace

void poison_event(tern::Client& client, const std::string& binary, const std::string& dir, bool quorum,
                  Scenario& s) {
  constexpr int kMaxDeliveries = 3, kInnocents = 40;
  const std::string type = quorum ? "quorum" : "classic";
  const std::string service = fmt::format("test.fault.poison-event-{}-{}", type, getpid());
  const std::string ledger = dir + "/poison-event-" + type + ".ledger";
  const std::string dead_letter = service + ".on.probe.hop.dead-letter";
  const std::vector<std::string> env = {"FAULT_SERVICE=" + service, "FAULT_EVENT_LEDGER=" + ledger,
                                        "FAULT_EVENT_SLEEP_MS=300", "TERN_EVENT_QUEUE_TYPE=" + type,
                                        fmt::format("TERN_MAX_DELIVERIES={}", kMaxDeliveries), "TERN_THREADS=1"};
  int started = 0;
  std::optional<ServiceProcess> a;
  auto start = [&] { a.emplace(binary, fmt::format("{}/poison-event-{}-{}.log", dir, type, started++), env); };
  start();  // declares and binds the subscription queue
  // The poison in the middle of innocents: with 300 ms handlers and the
  // prefetch, many are in flight with it when it crashes the instance.
  int confirmed = 0;
  const std::string poison = "crash-" + tern::new_trace_id();
  std::vector<std::string> innocents;
  client.run([&] {
    for (int i = 0; i <= kInnocents; ++i) {
      probe::Hop hop;
      hop.set_service(i == kInnocents / 2 ? poison : fmt::format("innocent-{}", i));
      if (i != kInnocents / 2) innocents.push_back(hop.service());
      if (tern::publish(tern::Context::with_timeout(5s), hop).ok()) ++confirmed;
    }
  });
  // Restart each instance the poison crashes until the innocents are all
  // handled and the poison is out of the way (bounded).
  std::vector<int> signals;
  std::vector<pid_t> crashed;
  auto all_handled = [&] {
    const EventLedger l = EventLedger::read(ledger);
    for (const auto& name : innocents)
      if (l.done.count(name) == 0) return false;
    return true;
  };
  for (auto until = Clock::now() + 60s; Clock::now() < until;) {
    int status = 0;
    if (a->exited(&status)) {
      signals.push_back(a->killed_by());
      crashed.push_back(a->started_pid());
      start();
      continue;
    }
    if (all_handled() && queue_messages(dead_letter) >= 1) break;
    std::this_thread::sleep_for(50ms);
  }
  const EventLedger l = EventLedger::read(ledger);
  int handled = 0, dead = queue_messages(dead_letter);
  for (const auto& name : innocents) handled += l.done.count(name) > 0 ? 1 : 0;
  const auto begun = l.begun.count(poison) ? l.begun.at(poison) : std::multiset<pid_t>{};
  int aborts = 0;
  for (int sig : signals) aborts += sig == SIGABRT ? 1 : 0;
  // The premise: when the poison first crashed an instance, innocents it
  // had begun were still unfinished there (in flight with the poison).
  int in_flight = 0;
  if (!crashed.empty()) {
    const pid_t first = crashed.front();
    for (const auto& name : innocents) {
      const bool began_there = l.begun.count(name) && l.begun.at(name).count(first);
      const bool done_there = l.done.count(name) && l.done.at(name).count(first);
      if (began_there && !done_there) ++in_flight;
    }
  }
  s.line(fmt::format("{}/{} events confirmed; {} crashes ({} by SIGABRT), the poison begun {} times and never "
                     "finished; {} innocents in flight with it at its first crash; innocents handled: {}/{}; "
                     "dead-lettered: {} (must be the poison alone)",
                     confirmed, kInnocents + 1, signals.size(), aborts, begun.size(), in_flight, handled,
                     kInnocents, dead));
  s.expect(confirmed == kInnocents + 1, "every event was confirmed");
  bool each_began_it = true;
  for (pid_t p : crashed) each_began_it = each_began_it && begun.count(p) > 0;
  s.expect(!signals.empty() && aborts == static_cast<int>(signals.size()) && each_began_it,
           "each crash was an abort of an instance that had begun the poison");
  s.expect(l.done.count(poison) == 0, "the poison never had its effect");
  s.expect(in_flight > 0, "innocents were in flight with the poison when it crashed an instance");
  s.expect(handled == kInnocents, "every innocent event was handled");
  s.expect(dead == 1, "only the poison was dead-lettered");
  s.expect(signals.size() == size_t{kMaxDeliveries}, "the poison crashed TERN_MAX_DELIVERIES instances");
}
