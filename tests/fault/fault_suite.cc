// The fault suite: under a load of concurrent calls, each with an
// idempotency key or not at random, break things; then check what the client
// was told against the ledger the handlers wrote (tests/fault/ledger.h), and
// check that the fault really happened.
//
//   fault_suite SERVICE_BINARY [REPORT_FILE]          the faults
//   fault_suite --break SERVICE_BINARY [REPORT_FILE]  each checker against a
//                                                     deliberately broken service
//   fault_suite --broker SERVICE_BINARY [REPORT_FILE]  the broker killed and
//                                                      frozen (a private node)
//   fault_suite --network SERVICE_BINARY [REPORT_FILE] a half-open and a slow,
//                                                      lossy link (namespaces)
// The last two run through tests/fault/private_broker.sh, which starts the
// node (and the namespaces) they may break.
//
// Needs TERN_AMQP_URL, TERN_RABBIT_NODE and TERN_RABBIT_DIR (scripts/test
// sets them). Prints the figures of each scenario and "N passed, M failed".
// FAULT_ONLY=TEXT runs the scenarios whose name contains TEXT; FAULT_KEEP=1
// keeps the ledgers and the instances' logs.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alarm_scenario.h"
#include "bad_messages.h"
#include "broker_faults.h"
#include "ledger.h"
#include "load.h"
#include "poison_event.h"
#include "probe.pb.h"
#include "scenario.h"
#include "service_process.h"
#include "suite.h"
#include "tern/tern.h"

namespace {

void broker_restart(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("restart");
  Instance a("restart-a", path), b("restart-b", path);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  int stop_rc = -1, start_rc = -1;
  const int link_failures = attempts.link_failures();
  auto calls = run_load(client, attempts, {.calls = 2000, .concurrency = 30, .sleep_ms = 50, .fault = [&] {
    stop_rc = rabbit_ctl("stop_app");
    std::this_thread::sleep_for(1s);  // the outage
    start_rc = rabbit_ctl("start_app");
  }});
  // Calls during the outage may fail (UNAVAILABLE); all end in time, and
  // everyone reconnects by themselves.
  const bool back = await_service(client);
  const bool a_back = await_output(a, "reconnected to the broker");
  const bool b_back = await_output(b, "reconnected to the broker");
  auto after = run_load(client, attempts, {.calls = 200, .concurrency = 10, .sleep_ms = 5});
  const ledger::Ledger l = ledger::settle(path, pids);
  s.check(calls, l, pids, {});
  s.check(after, l, pids, {.all_ok = true, .label = "afterwards, "});
  const std::set<pid_t> serving_after = l.only(after.tag).pids();
  const int lost_links = attempts.link_failures() - link_failures;
  s.line(fmt::format("premises: stop_app rc={} start_app rc={}; both instances logged a reconnect: {}; the "
                     "client's attempts failed on its lost link {} times; afterwards served by {} of 2 instances",
                     stop_rc, start_rc, a_back && b_back ? "yes" : "no", lost_links, serving_after.size()));
  s.expect(stop_rc == 0 && start_rc == 0, "the broker restarted");
  s.expect(a_back && b_back, "both instances reconnected");
  s.expect(lost_links > 0, "the client lost its link");
  s.expect(back && serving_after == pids, "both instances serve again");
}

// Waits (bounded) until `pid` holds requests it began and has not
// finished, keyed and unkeyed ones: the moment to break it. Returns them.
std::set<std::string> await_held(const std::string& path, pid_t pid) {
  std::set<std::string> held;
  for (auto until = Clock::now() + 10s; Clock::now() < until; std::this_thread::sleep_for(1ms))
    if (held = ledger::read(path).held_by(pid); kinds(held).both()) break;
  return held;
}

void kill_9(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("kill");
  Instance a("kill-a", path), b("kill-b", path);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  const pid_t victim = a.pid();
  auto calls = run_load(client, attempts, {.calls = 1000, .concurrency = 30, .sleep_ms = 50, .fault = [&] {
    await_held(path, victim);
    a.signal(SIGKILL);
    a.wait();
  }});
  const ledger::Ledger l = ledger::settle(path, {b.pid()}).only(calls.tag);
  const auto held = l.held_by(victim), again = l.redelivered_from(victim);
  s.check(calls, l, pids,
          {.all_ok = true,
           .gap_keys = l.redelivered_after_effect(victim),
           .gap = "applied by the killed instance, which died before its ack, then redelivered to the other"});
  s.line(fmt::format("premises: the victim ended by signal {} holding {} requests it had begun ({}); {} of "
                     "them redelivered (the same attempt begun by the survivor), {} stranded",
                     a.killed_by(), held.size(), kinds(held).to_string(), again.size(), held.size() - again.size()));
  s.expect(a.killed_by() == SIGKILL, "the victim was killed by SIGKILL");
  s.expect(kinds(held).both(), "the victim held keyed and unkeyed requests");
  s.expect(again.size() == held.size(), "every request it held was redelivered");
}

void sigstop(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("stop");
  Instance a("stop-a", path), b("stop-b", path);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  const pid_t victim = a.pid();
  bool stopped = false;
  std::set<std::string> held;  // begun by a, unfinished, once it is stopped
  auto calls = run_load(client, attempts, {.calls = 400, .concurrency = 20, .sleep_ms = 50, .timeout = 10s,
                                           .fault = [&] {
    await_held(path, victim);
    a.signal(SIGSTOP);
    for (auto until = Clock::now() + 2s; !stopped && Clock::now() < until; std::this_thread::sleep_for(5ms))
      stopped = a.state() == 'T';
    held = ledger::read(path).held_by(victim);
    std::this_thread::sleep_for(6s);  // past 2 x its 2 s heartbeat
    a.signal(SIGCONT);
  }});
  const bool dropped = await_output(a, "reconnected to the broker");
  const ledger::Ledger l = ledger::settle(path, pids).only(calls.tag);
  auto [keyed, unkeyed] = s.check(
      calls, l, pids,
      {.gap_keys = held, .gap = "begun by the stopped instance, which finished them after SIGCONT, and retried on "
                                "the other meanwhile"});
  // A keyed call is retried past the stopped instance, unless the retry
  // budget (10% of calls, at least 10 a second) ran out while many attempts
  // waited on it: only then may one fail, and it says so.
  int unretried = 0;
  for (const auto& o : calls.outcomes)
    if (o.keyed && o.kind != ledger::Outcome::kOk && o.message.find("retry budget exhausted") != std::string::npos)
      ++unretried;
  s.expect(keyed.ok + unretried == keyed.sent, "keyed calls ok, but for those the retry budget did not retry");
  if (unretried > 0) s.line(fmt::format("keyed calls the retry budget did not retry (they say so): {}", unretried));
  s.line(fmt::format("premises: stopped (state T): {}, holding {} requests it had begun ({}); it reconnected "
                     "after SIGCONT (the broker had dropped it): {}; calls retried: {}",
                     stopped ? "yes" : "no", held.size(), kinds(held).to_string(), dropped ? "yes" : "no",
                     l.retried()));
  s.expect(stopped, "the instance was stopped");
  s.expect(kinds(held).both(), "it held keyed and unkeyed requests");
  s.expect(dropped, "the broker dropped its connection");
}

void garbage(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string path = ledger_path("garbage");
  Instance a("garbage-a", path), b("garbage-b", path);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  BadMessages bad;
  auto calls = run_load(client, attempts, {.calls = 400, .concurrency = 20, .sleep_ms = 10,
                                           .fault = [&] { bad = send_bad_messages("test.fault"); }});
  s.check(calls, ledger::settle(path, pids), pids, {.all_ok = true});
  s.line("premises: " + bad.to_string());
  s.expect(bad.as_expected(), "every bad message arrived and was handled");
}

void overload(tern::Client& client, const Attempts& attempts, Scenario& s) {
  const std::string service = "test.fault.small", path = ledger_path("overload");
  Instance a("overload-a", path, {"TERN_CONCURRENCY=4", "TERN_MAX_QUEUE_LENGTH=20", "FAULT_SERVICE=" + service});
  auto calls = run_load(client, attempts, {.service = service, .calls = 600, .concurrency = 200, .sleep_ms = 50});
  auto [keyed, unkeyed] = s.check(calls, ledger::settle(path, {a.pid()}), {a.pid()}, {});
  for (const auto* v : {&keyed, &unkeyed}) {
    const int exhausted = v->errors.count("RESOURCE_EXHAUSTED") ? v->errors.at("RESOURCE_EXHAUSTED") : 0;
    s.expect(exhausted > 0 && v->refused == exhausted && v->ok + exhausted == v->sent,
             "overload pushed back as RESOURCE_EXHAUSTED, every other call ok");
  }
  int by_queue = 0;  // refusals the service sent for its full queue (not the client's own bound)
  for (const auto& o : calls.outcomes) by_queue += o.message.find("is overloaded: its queue holds") != std::string::npos;
  s.line(fmt::format("premises: {} refusals came from the full queue ({}.overflow)", by_queue, service));
  s.expect(by_queue == keyed.refused + unkeyed.refused, "every refusal came from the full queue");
}

// SIGTERM with the default drain timeout: the requests in flight finish
// where they are. With `overrun`, the handlers outlast a 50 ms drain
// timeout: their deliveries go back to the queue and run again elsewhere.
void sigterm(tern::Client& client, const Attempts& attempts, Scenario& s, bool overrun) {
  const std::string path = ledger_path(overrun ? "term-overrun" : "term");
  const std::vector<std::string> env = {overrun ? "TERN_DRAIN_TIMEOUT_MS=50" : "TERN_DRAIN_TIMEOUT_MS=10000"};
  Instance a("term-a", path, env), b("term-b", path, env);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  const pid_t victim = a.pid();
  int status = -2;
  std::set<std::string> in_flight;  // begun, not finished
  auto calls = run_load(client, attempts, {.calls = 400, .concurrency = 20, .sleep_ms = overrun ? 300u : 100u,
                                           .fault = [&] {
    in_flight = await_held(path, victim);
    a.signal(SIGTERM);
    status = a.wait();
  }});
  const ledger::Ledger l = ledger::settle(path, {b.pid()}).only(calls.tag);
  const auto again = l.redelivered_from(victim), late_effects = l.redelivered_after_effect(victim);
  s.check(calls, l, pids,
          {.all_ok = true,
           .gap_keys = late_effects,
           .gap = "still running at the drain timeout: redelivered to the other instance, and finished by the "
                  "stopping one anyway"});
  const std::string out = a.output();
  const bool drained = out.find("SIGTERM received, draining") != std::string::npos;
  const bool gave_up = out.find("still running after the drain timeout") != std::string::npos;
  // A link lost and re-made while draining makes the acks of what it then
  // finishes stale (the broker redelivers those): say so, to tell that
  // apart from acks lost on the way out.
  const bool lost_link = out.find("broker connection lost") != std::string::npos;
  s.line(fmt::format("premises: {} requests in flight at the signal ({}); it drained ({}{}) and exited with "
                     "status {} (signal {}); redelivered: {} ({} of them applied by it anyway); calls retried: {}; "
                     "its broker link {}",
                     in_flight.size(), kinds(in_flight).to_string(), drained ? "logged" : "not logged",
                     gave_up ? ", gave up at the drain timeout" : "", status, a.killed_by(),
                     again.size() + late_effects.size(), late_effects.size(), l.retried(),
                     lost_link ? "was lost (logged)" : "held"));
  s.expect(kinds(in_flight).both(), "keyed and unkeyed requests were in flight at the signal");
  s.expect(drained && status == 0 && a.killed_by() == 0, "it drained and exited 0");
  s.expect(l.retried() == 0, "no call needed a retry");
  if (!overrun) {
    // They finished there: none needed a redelivery.
    s.expect(!gave_up && l.held_by(victim).empty() && late_effects.empty(), "it finished every request it began");
  } else {
    // What it had not answered by the drain timeout (all it had in flight
    // at the signal) ran again on the other.
    bool all_again = true;
    for (const auto& k : in_flight) all_again = all_again && (late_effects.count(k) || again.count(k));
    s.expect(gave_up && all_again && kinds(late_effects).both(), "what it had in flight was redelivered");
  }
}

void poison(tern::Client& client, Scenario& s) {
  // A poison request that crashes every instance that runs it: after
  // TERN_MAX_DELIVERIES deliveries it is dead-lettered and the caller told.
  constexpr int kMaxDeliveries = 3;
  const std::string service = "test.fault.poison", path = ledger_path("poison");
  const std::vector<std::string> env = {"FAULT_SERVICE=" + service,
                                        fmt::format("TERN_MAX_DELIVERIES={}", kMaxDeliveries)};
  std::optional<Instance> a;
  a.emplace("poison-0", path, env);
  tern::Result<probe::ProbeResponse> result = tern::Error{};
  std::atomic<bool> done{false};
  const std::string key = "crash-" + tern::new_trace_id();
  std::thread caller([&] {
    probe::ProbeRequest req;
    req.set_payload(key);
    auto ctx = tern::Context::with_timeout(60s);
    result = client.call<probe::ProbeResponse>(ctx, service, "work", req, {.timeout = 60s, .max_attempts = 1});
    done = true;
  });
  // Restart each instance the poison request crashes, until the caller is
  // answered (the instance that dead-letters it keeps running, so never
  // block on its exit). The caller's 60 s deadline bounds the loop.
  std::set<pid_t> crashed, aborted;
  while (!done && crashed.size() < 8) {
    int status = 0;
    if (!a->exited(&status)) {
      std::this_thread::sleep_for(10ms);
      continue;
    }
    if (status != -1) break;
    crashed.insert(a->started_pid());
    if (a->killed_by() == SIGABRT) aborted.insert(a->started_pid());
    a.emplace(fmt::format("poison-{}", crashed.size()), path, env);
  }
  caller.join();
  const ledger::Ledger l = ledger::read(path).only(key);
  std::set<pid_t> began;
  int effects = 0;
  for (const auto& line : l.lines) {
    if (line.effect) ++effects;
    else began.insert(line.pid);
  }
  const bool told = !result.ok() && result.code() == tern::Code::kInternal &&
                    result.error().message.find("dead-letter") != std::string::npos;
  s.line(fmt::format("the caller got {}; {} crashes ({} by SIGABRT), the ledger shows it begun by {} instances, "
                     "{} effects",
                     result.ok() ? "OK" : result.error().to_string(), crashed.size(), aborted.size(), began.size(),
                     effects));
  s.expect(told, "the caller was told INTERNAL: dead-lettered");
  s.expect(crashed.size() == size_t{kMaxDeliveries} && aborted == crashed, "each delivery crashed an instance");
  s.expect(began == crashed && effects == 0, "each crash was the poison request");
}

// Each checker against a deliberately broken service (or client): the
// figure it guards must come out non-zero.
void broken(tern::Client& client, Attempts& attempts, const std::string& what, Scenario& s) {
  const std::string path = ledger_path("break-" + what);
  const std::vector<std::string> env = {what == "late" ? "FAULT_BREAK=" : "FAULT_BREAK=" + what};
  Instance a("break-" + what + "-a", path, env), b("break-" + what + "-b", path, env);
  const std::set<pid_t> pids = {a.pid(), b.pid()};
  attempts.set_late_break(what == "late");
  auto calls = run_load(client, attempts, {.calls = 200, .concurrency = 20, .sleep_ms = 5, .timeout = 1s});
  attempts.set_late_break(false);
  const ledger::Ledger l = ledger::settle(path, pids).only(calls.tag);
  for (bool keyed : {true, false}) {
    const ledger::Verdict v = ledger::check(calls.outcomes, l, keyed, calls.tag + kind_prefix(keyed));
    s.line(fmt::format("{}:{} {}", keyed ? "keyed" : "unkeyed", keyed ? "  " : "", v.to_string()));
    const int figure = what == "skip-effect"         ? v.lost
                       : what == "double-effect"     ? v.duplicated
                       : what == "effect-on-refusal" ? v.unexpected
                                                     : v.late;
    s.expect(figure > 0, std::string(keyed ? "keyed" : "unkeyed") + " figure > 0");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 && std::string(argv[1]).starts_with("--") ? argv[1] : "";
  if (!mode.empty()) --argc, ++argv;
  const bool breaks = mode == "--break";
  if (!mode.empty() && mode != "--break" && mode != "--broker" && mode != "--network") argc = 0;
  if (argc < 2 || argc > 3 || !std::getenv("TERN_AMQP_URL") || !std::getenv("TERN_RABBIT_NODE")) {
    fmt::print(stderr, "usage: fault_suite [--break|--broker|--network] SERVICE_BINARY [REPORT_FILE] (run through "
                       "scripts/test)\n");
    return 2;
  }
  // The figures also go to REPORT_FILE, for scripts/test to show.
  std::FILE* report_file = argc == 3 ? std::fopen(argv[2], "w") : nullptr;
  g_binary = argv[1];
  // Ledgers and logs: next to REPORT_FILE (the build directory), else in
  // $TMPDIR, in a directory of our own.
  std::string base = argc == 3 ? std::string(argv[2]) : std::string();
  base = base.find('/') != std::string::npos ? base.substr(0, base.rfind('/') + 1)
         : std::getenv("TMPDIR") != nullptr  ? std::string(std::getenv("TMPDIR")) + "/"
                                             : std::string("/tmp/");
  std::string tmpl = base + "fault-ledgers.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    fmt::print(stderr, "fault_suite: cannot make {}\n", tmpl);
    return 2;
  }
  g_dir = tmpl;
  tern::Options o = tern::Options::from_env();
  o.heartbeat_s = 2;
  Attempts attempts;
  tern::Client client(o, "fault.client", {attempts.filter()});
  int passed = 0, failed = 0;
  // FAULT_ONLY=TEXT runs only the scenarios whose name contains TEXT.
  const char* only = std::getenv("FAULT_ONLY");
  auto run = [&](const std::string& name, const std::function<void(Scenario&)>& body) {
    if (only != nullptr && name.find(only) == std::string::npos) return;
    Scenario s(name);
    try {
      body(s);
    } catch (const std::exception& e) {
      s.expect(false, std::string("threw: ") + e.what());
    }
    const std::string text = s.text();
    fmt::print("{}", text);
    std::fflush(stdout);
    if (report_file != nullptr) {
      std::fputs(text.c_str(), report_file);
      std::fflush(report_file);
    }
    (s.ok() ? passed : failed)++;
  };

  if (mode == "--broker") {
    run("kill -9 of the broker with persistent events in flight, restarted on its data dir",
        [&](Scenario& s) { broker_kill9(client, attempts, s); });
    run("SIGSTOP of the broker for 3 heartbeats with 256 KiB requests in flight, then SIGCONT",
        [&](Scenario& s) { broker_sigstop(client, attempts, s); });
  } else if (mode == "--network") {
    run("a half-open link: every packet dropped both ways for over 2 heartbeats, then let through",
        [&](Scenario& s) { link_half_open(client, attempts, s); });
    run("a slow (tbf 8 Mbit/s) and lossy (3% dropped both ways) link under load",
        [&](Scenario& s) { link_slow_lossy(client, attempts, s); });
  } else if (breaks) {
    run("FAULT_BREAK=skip-effect (ok without its effect) is caught: lost > 0",
        [&](Scenario& s) { broken(client, attempts, "skip-effect", s); });
    run("FAULT_BREAK=double-effect (its effect twice) is caught: duplicated > 0",
        [&](Scenario& s) { broken(client, attempts, "double-effect", s); });
    run("FAULT_BREAK=effect-on-refusal (RESOURCE_EXHAUSTED after its effect) is caught: unexpected > 0",
        [&](Scenario& s) { broken(client, attempts, "effect-on-refusal", s); });
    run("a client that returns after the deadline + 200 ms is caught: late > 0",
        [&](Scenario& s) { broken(client, attempts, "late", s); });
  } else {
    run("broker restart mid-load", [&](Scenario& s) { broker_restart(client, attempts, s); });
    run("kill -9 of one of two instances holding unacked requests",
        [&](Scenario& s) { kill_9(client, attempts, s); });
    run("SIGSTOP of an instance past its heartbeat timeout then SIGCONT",
        [&](Scenario& s) { sigstop(client, attempts, s); });
    run("malformed, oversized and wrong-typed messages mid-load", [&](Scenario& s) { garbage(client, attempts, s); });
    run("several times a service's capacity", [&](Scenario& s) { overload(client, attempts, s); });
    run("SIGTERM to an instance with requests in flight", [&](Scenario& s) { sigterm(client, attempts, s, false); });
    run("SIGTERM to an instance whose handlers outlast its drain timeout",
        [&](Scenario& s) { sigterm(client, attempts, s, true); });
    run("a request that crashes every instance running it", [&](Scenario& s) { poison(client, s); });
    for (bool quorum : {true, false})
      run(fmt::format("an event that crashes every instance handling it, among innocents in flight ({} "
                      "subscription)", quorum ? "quorum" : "classic"),
          [&](Scenario& s) { poison_event(client, g_binary, g_dir, quorum, s); });
    run("a broker memory alarm mid-load, failing event handlers and kill -9 of the subscriber mid-alarm",
        [&](Scenario& s) { memory_alarm_scenario(client, attempts, s, g_binary, g_dir); });
  }
  // FAULT_KEEP=1 keeps the ledgers and the instances' logs, for a look.
  if (std::getenv("FAULT_KEEP") != nullptr) fmt::print("ledgers and logs kept in {}\n", g_dir);
  else std::system(("rm -rf " + g_dir).c_str());
  fmt::print("{} passed, {} failed\n", passed, failed);
  if (report_file != nullptr) std::fclose(report_file);
  return failed == 0 ? 0 : 1;
}
